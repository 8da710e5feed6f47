#pragma once

// The HTTP/1.1 client (aiohttp's ClientSession): its pieces are in client_errors.hpp, client_options.hpp,
// client_response.hpp, client_stream.hpp, websocket_client.hpp and detail/client_{connection,pool,exchange}.hpp.

#include <coring/detail/inner_awaiter.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/http/detail/parser.hpp>
#include <coring/http/json.hpp>
#include <coring/http/message.hpp>
#include <coring/http/url.hpp>
#include <coring/http/websocket.hpp>
#include <coring/http/websocket_client.hpp>
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

/// An HTTP/1.1 client with a connection pool (aiohttp's ClientSession).
///
///     coring::http::client c;
///     coring::http::client_response r = co_await c.get("https://example.com/");
///     std::cout << r.status << " " << r.body.size() << "\n";
///
/// https:// URLs (with coring::tls, CORING_HTTP_TLS) are fetched over TLS, verified by default against the system's
/// trust store with the URL's host as SNI and as the name the certificate must carry (client_options::tls for a
/// private CA or, in tests only, no verification); the handshake counts against connect_timeout. A TLS connection
/// whose server ends it without close_notify is accepted once the response's own framing (Content-Length, the last
/// chunk) is complete, but a response delimited by the end of the connection then fails with tls::truncated.
///
/// Connections are kept per origin (scheme, host and port) and reused (keep-alive) for later requests, up to
/// max_idle_per_host idle ones for at most idle_lifetime each; many requests may run at once, each on a connection of
/// its own (at most max_connections_per_host per host; more wait). A connection goes back to the pool only after its
/// response was read completely and when both sides allow it: no "Connection: close", not HTTP/1.0 without keep-alive,
/// not a body delimited by the end of the connection, nothing unexpected after the response. A failed or cancelled
/// request closes its connection.
///
/// A server may close an idle connection at any moment. Before a pooled connection is used, the client checks that
/// the server has neither closed it nor sent anything on it since (a 408, say, whether still in the socket or already
/// in the stream's buffer): such a connection is closed, not used. When a request on a reused connection fails anyway
/// (the close crossed the request), it is sent once more on a new connection if nothing of it was written, or if its
/// method is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or any request with an Idempotency-Key header) and no
/// byte of the response had arrived; an idempotent request answered with a 408 on a reused connection (the server
/// timed it out as the request arrived) is sent once more on a new connection too. A POST whose bytes went out is
/// never sent twice.
///
/// Redirects (301, 302, 303, 307, 308 with a Location, relative ones resolved against the URL) are followed up to
/// max_redirects; 303, and 301 or 302 after a POST, continue as a GET without body or the fields that described it
/// (Content-Type, Content-Encoding, Content-Language, Content-Location); 307 and 308 repeat the method and body.
/// After a redirect to another origin (scheme, host or port; "http://a" and "http://a:80" are one origin), the
/// credentials (Authorization, Proxy-Authorization, Cookie, Cookie2), from the request or from default_headers, are
/// not sent for the rest of the chain, and a Host header given with the request is replaced by the new host's.
/// Redirects may go from http:// to https:// and back (the scheme is part of the origin: credentials stay behind);
/// other schemes are refused (std::invalid_argument).
///
/// Requests: the method is uppercased; a Host header (with the port when it is not the scheme's default) unless the
/// request has one; the default headers (User-Agent: coring) unless overridden; Content-Length for a body, and
/// "Content-Length: 0" for a POST, PUT or PATCH without one; Content-Length and Transfer-Encoding given by the caller
/// or in the default headers are ignored (the client frames the body). Header names must be tokens and values free of
/// CR, LF and NUL (std::invalid_argument).
///
/// Errors name the method and URL: malformed responses are protocol_error, timeouts http::client_timeout_error (a
/// coring::timeout_error), connection failures std::system_error with the errno, TLS failures tls::error with
/// OpenSSL's reason ("coring: http: GET https://h/: tls handshake with h:443: certificate verify failed: ..."), an
/// end without close_notify of a body delimited by the end of the connection tls::truncated, bad URLs
/// std::invalid_argument (https:// too in a build without TLS). A status such as 404 or 500 is a response, not an
/// error. cancelled_error passes unchanged.
///
/// Loop thread only. Requests and streams keep what they need of the client alive, so the client may be destroyed
/// while they run (their connections are then closed instead of pooled).
class client {
public:
    /// A client with the given options.
    explicit client(client_options options = {}) : pool_(std::make_shared<detail::client_pool>(std::move(options))) {}
    client(const client&) = delete;
    client& operator=(const client&) = delete;
    /// Closes every idle connection (synchronously); requests still running finish on their own.
    ~client() {
        if (pool_) pool_->shut();
    }

    /// Sends `method` to `url` with `body` and `headers` and reads the whole response (aiohttp's
    /// session.request()). An empty body sends none (but "Content-Length: 0" for POST, PUT and PATCH).
    [[nodiscard]] task<client_response> request(std::string method, std::string url, std::string body = {},
                                                http::headers headers = {}, request_options options = {}) {
        return detail::client_fetch(pool_, std::move(method), std::move(url), std::move(body), std::move(headers),
                                    options);
    }
    /// GET `url`.
    [[nodiscard]] task<client_response> get(std::string url, http::headers headers = {}) {
        return request("GET", std::move(url), {}, std::move(headers));
    }
    /// Opens a WebSocket to a ws:// or wss:// URL (aiohttp's ws_connect): connects, performs the opening handshake
    /// (its Sec-WebSocket-Accept checked; wss:// through the client's TLS settings, verified as its https://
    /// requests are) and returns the connection, which the caller owns and closes (websocket::close). Throws
    /// websocket_handshake_error when the server does not switch protocols, std::invalid_argument for another scheme,
    /// and what connecting throws. Not pooled: the connection is the caller's alone.
    [[nodiscard]] task<http::websocket> websocket(std::string url) {
        return detail::client_websocket(pool_, std::move(url), websocket_client_options{});
    }
    /// As websocket(url), with subprotocols, headers, limits and a timeout.
    [[nodiscard]] task<http::websocket> websocket(std::string url, const websocket_client_options& options) {
        return detail::client_websocket(pool_, std::move(url), options);
    }
    /// HEAD `url` (the response has no body).
    [[nodiscard]] task<client_response> head(std::string url, http::headers headers = {}) {
        return request("HEAD", std::move(url), {}, std::move(headers));
    }
    /// POST `body` to `url`, with a Content-Type unless `content_type` is empty.
    [[nodiscard]] task<client_response> post(std::string url, std::string body, std::string_view content_type = {},
                                             http::headers headers = {}) {
        with_type(headers, content_type);
        return request("POST", std::move(url), std::move(body), std::move(headers));
    }
    /// PUT `body` to `url`, with a Content-Type unless `content_type` is empty.
    [[nodiscard]] task<client_response> put(std::string url, std::string body, std::string_view content_type = {},
                                            http::headers headers = {}) {
        with_type(headers, content_type);
        return request("PUT", std::move(url), std::move(body), std::move(headers));
    }
    /// PATCH `url` with `body`, with a Content-Type unless `content_type` is empty.
    [[nodiscard]] task<client_response> patch(std::string url, std::string body, std::string_view content_type = {},
                                              http::headers headers = {}) {
        with_type(headers, content_type);
        return request("PATCH", std::move(url), std::move(body), std::move(headers));
    }
    /// DELETE `url` (`delete` is a C++ keyword).
    [[nodiscard]] task<client_response> del(std::string url, http::headers headers = {}) {
        return request("DELETE", std::move(url), {}, std::move(headers));
    }

    /// Sends a request and returns when the head of the final response has arrived; the body is read from the
    /// client_stream as it arrives (aiohttp's `async with session.get(url) as resp`).
    [[nodiscard]] task<client_stream> open(std::string method, std::string url, std::string body = {},
                                           http::headers headers = {}, request_options options = {}) {
        return detail::client_open(pool_, std::move(method), std::move(url), std::move(body), std::move(headers),
                                   options);
    }

    /// Closes every idle connection and refuses new requests (std::logic_error); requests in flight finish, and
    /// close their connections instead of pooling them.
    [[nodiscard]] task<> close() { return close_pool(pool_); }

    /// Idle connections in the pool, all hosts together.
    [[nodiscard]] std::size_t idle_connections() const noexcept {
        std::size_t n = 0;
        for (const auto& [key, h] : pool_->hosts) n += h.idle.size();
        return n;
    }
    /// Connections opened so far (a measure of keep-alive reuse).
    [[nodiscard]] std::size_t connections_opened() const noexcept { return pool_->opened; }
    /// The options the client was made with.
    [[nodiscard]] const client_options& options() const noexcept { return pool_->opts; }

private:
    static void with_type(http::headers& headers, std::string_view content_type) {
        if (!content_type.empty() && !headers.contains("Content-Type")) headers.add("Content-Type", content_type);
    }
    static task<> close_pool(std::shared_ptr<detail::client_pool> pool) {
        pool->closed = true;
        std::vector<std::unique_ptr<detail::client_connection>> idle;
        for (auto& [key, h] : pool->hosts) {
            for (auto& c : h.idle) idle.push_back(std::move(c));
            h.idle.clear();
        }
        for (auto& c : idle) {
            auto closing = c->close();
            co_await closing;
        }
    }

    std::shared_ptr<detail::client_pool> pool_;
};

} // namespace coring::http
