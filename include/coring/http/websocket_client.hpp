#pragma once

// The client side of WebSockets: the opening handshake over a pooled client's connection (client::websocket).

#include <coring/detail/inner_awaiter.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/http/client_stream.hpp>
#include <coring/http/detail/parser.hpp>
#include <coring/http/json.hpp>
#include <coring/http/message.hpp>
#include <coring/http/url.hpp>
#include <coring/http/websocket.hpp>
#include <coring/net/tcp.hpp>
#include <coring/sync/semaphore.hpp>
#include <coring/task/task.hpp>
#include <coring/time/timeout.hpp>
#if CORING_HTTP_TLS
#include <coring/tls/context.hpp>
#include <coring/tls/error.hpp>
#include <coring/tls/stream.hpp>
#endif

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace coring::http {

/// How client::websocket opens a connection.
struct websocket_client_options {
    websocket_options limits{};              ///< message and frame limits, keep-alive pings, the close timeout
    std::vector<std::string> subprotocols{}; ///< offered in Sec-WebSocket-Protocol, preferred first
    /// More request headers (Origin, Authorization, Cookie). The client's default_headers go too, unless named here;
    /// the handshake's own fields (Host, Upgrade, Connection, Sec-WebSocket-*) are refused (std::invalid_argument).
    http::headers headers{};
    std::chrono::milliseconds timeout{30'000}; ///< for the whole opening: connect, TLS, handshake
};

/// The server did not accept a WebSocket handshake (aiohttp's WSServerHandshakeError): it answered another status
/// than 101, or a 101 that is not acceptable (status() is then 101), or no HTTP/1.1 answer at all (status() is 0).
class websocket_handshake_error : public websocket_error {
public:
    /// A refusal with HTTP status `status` (see status()), described by `what`.
    websocket_handshake_error(int status, const std::string& what)
        : websocket_error(close_code::abnormal, what), status_(status) {}
    /// The server's HTTP status: 101 when the 101 itself was unacceptable (no Upgrade, a wrong Sec-WebSocket-Accept, an
    /// extension or subprotocol not offered); 0 when there was no HTTP/1.1 status line, the head was over 16 KiB, or
    /// the connection closed first.
    [[nodiscard]] int status() const noexcept { return status_; }

private:
    int status_;
};

namespace detail {

/// The client's opening handshake over a connected stream (RFC 6455 section 4.1), then the websocket, which owns
/// the stream.
template <class S>
task<http::websocket> ws_client_handshake(S s, url u, std::string where, websocket_client_options o,
                                          client_clock::time_point deadline, http::headers defaults) {
    std::random_device rd;
    std::uint8_t raw[16];
    for (std::uint8_t& b : raw) b = static_cast<std::uint8_t>(rd());
    const std::string key = base64_encode(raw, sizeof raw);
    std::string req =
        coring::detail::str_cat("GET ", u.target, " HTTP/1.1\r\nHost: ", u.authority(),
                                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ", key,
                                "\r\nSec-WebSocket-Version: 13\r\n");
    for (const std::string& p : o.subprotocols)
        if (p.empty() || !is_token(p))
            throw std::invalid_argument("coring: websocket: subprotocol \"" + p + "\" is not a token");
    if (o.limits.permessage_deflate) {
        if (!ws_deflate_available)
            throw std::invalid_argument("coring: websocket: permessage_deflate needs coring built with zlib "
                                        "(CORING_HTTP_ZLIB)");
        req += coring::detail::str_cat("Sec-WebSocket-Extensions: ", ws_deflate_offer, "\r\n");
    }
    if (!o.subprotocols.empty()) {
        req += "Sec-WebSocket-Protocol: ";
        for (std::size_t i = 0; i < o.subprotocols.size(); ++i) {
            if (i) req += ", ";
            req += o.subprotocols[i];
        }
        req += "\r\n";
    }
    // The handshake's own fields are the client's to write; the client's default headers (User-Agent, say) go too,
    // unless the options give the same field.
    const auto own = [](std::string_view name) {
        return iequals(name, "Host") || iequals(name, "Upgrade") || iequals(name, "Connection") ||
               iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") ||
               (name.size() >= 14 && iequals(name.substr(0, 14), "Sec-WebSocket-"));
    };
    for (const field& f : defaults)
        if (!own(f.name) && !o.headers.contains(f.name) && is_token(f.name) && !unsafe_field(f.value))
            req += coring::detail::str_cat(f.name, ": ", f.value, "\r\n");
    for (const field& f : o.headers) {
        if (!is_token(f.name) || unsafe_field(f.value))
            throw std::invalid_argument("coring: websocket: a request header has an invalid name, or CR, LF or NUL");
        if (own(f.name))
            throw std::invalid_argument("coring: websocket: the header " + f.name +
                                        " is the handshake's own (use websocket_client_options::subprotocols)");
        req += coring::detail::str_cat(f.name, ": ", f.value, "\r\n");
    }
    req += "\r\n";
    co_await timeout_at(deadline, s.write_all(req));
    std::string in;
    char buf[4096];
    std::size_t head_end = std::string::npos;
    while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
        if (in.size() > 16 * 1024) throw websocket_handshake_error(0, where + ": the answer's head is over 16 KiB");
        const std::size_t n = co_await timeout_at(deadline, s.read(std::span(buf)));
        if (n == 0)
            throw websocket_handshake_error(0, where + ": the server closed the connection during the handshake");
        in.append(buf, n);
    }
    if (head_end > 16 * 1024) throw websocket_handshake_error(0, where + ": the answer's head is over 16 KiB");
    const std::string_view head = std::string_view(in).substr(0, head_end);
    const std::size_t line_end = head.find("\r\n");
    const std::string_view status_line = head.substr(0, line_end);
    int status = 0;
    if (status_line.starts_with("HTTP/1.1 ") && status_line.size() >= 12 &&
        (status_line.size() == 12 || status_line[12] == ' '))
        std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
    if (status != 101)
        throw websocket_handshake_error(status,
                                        where + ": the server answered \"" + std::string(status_line) + "\", not 101");
    http::headers got;
    for (std::string_view rest = line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
         !rest.empty();) {
        const std::size_t e = rest.find("\r\n");
        const std::string_view line = rest.substr(0, e);
        rest = e == std::string_view::npos ? std::string_view() : rest.substr(e + 2);
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
        got.add(line.substr(0, colon), value);
    }
    const auto upgrade = got.get("Upgrade");
    const auto connection = got.get("Connection");
    const auto accept = got.get("Sec-WebSocket-Accept");
    if (!upgrade || !has_token(*upgrade, "websocket") || !connection || !has_token(*connection, "upgrade"))
        throw websocket_handshake_error(101, where + ": a 101 without Upgrade: websocket");
    std::optional<ws_deflate_params> deflate;
    if (got.contains("Sec-WebSocket-Extensions")) {
        if (!o.limits.permessage_deflate)
            throw websocket_handshake_error(101, where + ": the server chose an extension, and none was offered");
        deflate = ws_deflate_check_answer(got.get_all("Sec-WebSocket-Extensions"));
        if (!deflate)
            throw websocket_handshake_error(101, where +
                                                     ": the server answered extensions this client did not "
                                                     "offer, or permessage-deflate parameters it cannot take: " +
                                                     std::string(got.get_or("Sec-WebSocket-Extensions", "")));
    }
    if (!accept || *accept != ws_accept_key(key))
        throw websocket_handshake_error(101, where + ": a wrong Sec-WebSocket-Accept");
    std::string proto(got.get_or("Sec-WebSocket-Protocol", ""));
    if (!proto.empty()) {
        bool offered = false;
        for (const std::string& p : o.subprotocols) offered = offered || p == proto;
        if (!offered)
            throw websocket_handshake_error(101, where + ": the server chose subprotocol \"" + proto +
                                                     "\", which was not offered");
    }
    std::string leftover = in.substr(head_end + 4);
    co_return http::websocket(std::make_unique<ws_transport_own<S>>(std::move(s)), http::websocket::role::client,
                              std::move(leftover), o.limits, std::move(proto), deflate);
}

/// client::websocket: ws:// over TCP, wss:// over TLS with the client's context (verified as its https:// requests).
inline task<http::websocket> client_websocket([[maybe_unused]] std::shared_ptr<client_pool> pool, std::string where,
                                              websocket_client_options o) {
    std::string as_http;
    if (where.starts_with("ws://")) as_http = "http://" + where.substr(5);
    else if (where.starts_with("wss://")) as_http = "https://" + where.substr(6);
    else throw std::invalid_argument("coring: websocket: \"" + where + "\": expected ws:// or wss://");
    const url u = url::parse(as_http);
    const client_clock::time_point deadline = client_deadline(o.timeout);
    task<tcp_stream> connecting = tcp_stream::connect(u.host, u.port);
    tcp_stream s = co_await timeout_at(deadline, std::move(connecting));
    s.set_nodelay(true); // frames are written whole; Nagle would hold small ones back
    if (u.scheme == "https") {
#if CORING_HTTP_TLS
        task<coring::tls::stream> handshaking = coring::tls::stream::connect(pool->tls_context(), std::move(s), u.host);
        coring::tls::stream t = co_await timeout_at(deadline, std::move(handshaking));
        task<http::websocket> opening =
            ws_client_handshake(std::move(t), u, where, std::move(o), deadline, pool->opts.default_headers);
        co_return co_await std::move(opening);
#else
        throw std::invalid_argument("coring: websocket: \"" + where + "\": wss:// needs coring built with TLS");
#endif
    }
    task<http::websocket> opening =
        ws_client_handshake(std::move(s), u, where, std::move(o), deadline, pool->opts.default_headers);
    co_return co_await std::move(opening);
}

} // namespace detail

} // namespace coring::http
