#pragma once

// One HTTP client request on the wire: a connection from the pool, the request, the response's head, retries and
// redirects.

#include <coring/detail/inner_awaiter.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/http/detail/client_pool.hpp>
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

namespace detail {

/// What is sent for the current hop of a request (redirects change it).
struct client_request_spec {
    std::string method;        ///< uppercase
    std::string body;          ///< sent with Content-Length
    http::headers headers;     ///< the caller's, validated
    bool cross_origin = false; ///< a redirect left the first origin: no credentials from the defaults either
    bool body_dropped = false; ///< a redirect turned it into a GET: no body fields from the defaults either
};

/// Whether two URLs have one origin (RFC 6454: scheme, host and port). url::parse lowercases the scheme and the host
/// and fills in the scheme's default port, so "http://A" and "http://a:80" are one origin.
inline bool client_same_origin(const url& a, const url& b) noexcept {
    return a.scheme == b.scheme && a.host == b.host && a.port == b.port;
}

/// Fields that hold credentials for the origin they were given for (RFC 9110 15.4: not to be sent on to another
/// after a redirect). Proxy-Authorization too: coring has no proxy, so it could only be meant for the first host.
inline constexpr std::string_view client_credential_fields[] = {"Authorization", "Proxy-Authorization", "Cookie",
                                                                "Cookie2"};

/// Fields that describe a request's body (Fetch's request-body-header names): wrong once a redirect drops the body.
inline constexpr std::string_view client_body_fields[] = {"Content-Type", "Content-Encoding", "Content-Language",
                                                          "Content-Location"};

/// Whether `name` frames a message's body (Content-Length, Transfer-Encoding): the client writes those itself, from
/// the body it sends; one from the caller or the defaults would desynchronise the connection.
inline bool client_framing_field(std::string_view name) noexcept {
    return iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding");
}

/// Whether `name` is one of `names`, in any case.
template <std::size_t N>
bool client_field_in(std::string_view name, const std::string_view (&names)[N]) noexcept {
    for (std::string_view n : names)
        if (iequals(name, n)) return true;
    return false;
}

/// The state of one request from its first byte to its last: its connection while it has one, the response parser
/// and the body bytes parsed but not handed out yet. Heap-allocated, so that client_stream can move.
struct client_exchange {
    std::shared_ptr<client_pool> pool;       // first: outlives the permit and the connection
    client_host* host = nullptr;             // whose permit is held
    client_permit permit;                    // a place under host->limit while a connection is used
    std::unique_ptr<client_connection> conn; // destroyed (closed) before the permit goes back

    std::string method;                                                  // of the current hop, for messages
    http::url first;                                                     // as requested
    http::url current;                                                   // the hop in progress
    std::string where;                                                   // current.to_string(), for messages
    client_clock::time_point deadline = client_clock::time_point::max(); // of the whole request, body included
    std::chrono::milliseconds total{0};                                  // the timeout it came from, for messages

    http::headers headers;                // of the response
    http::headers trailers;               // of a chunked response, once its body ended
    std::string body;                     // parsed body bytes; [body_pos, size) not handed out yet
    std::size_t body_pos = 0;             // how much of body read() has handed out
    std::optional<message_parser> parser; // bound to headers and body; a fresh one per hop
    int status = 0;                       // of the final response, once its head arrived
    int version_minor = 1;                // of the final response

    bool head = false;           // a HEAD request: no body follows the response's head
    bool close_after = false;    // the request said "Connection: close"
    bool done = false;           // the response is complete and its connection released
    bool reused = false;         // the connection had carried a response before
    bool nothing_written = true; // no byte of the request reached the kernel
    bool got_bytes = false;      // a byte of the response arrived

    /// Abandons the connection (closed, never pooled: its state is unknown) and the permit.
    void drop() noexcept {
        conn.reset();
        permit.reset();
    }
};

/// Whether a request may be sent again after its connection failed: the method is idempotent (RFC 9110 9.2.2), or
/// the request carries an idempotency key (as Go's net/http accepts).
inline bool client_idempotent(const client_request_spec& s) noexcept {
    for (std::string_view m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
        if (s.method == m) return true;
    return s.headers.contains("Idempotency-Key") || s.headers.contains("X-Idempotency-Key");
}

/// The errnos of a connection that the server closed or reset under the request.
inline bool client_connection_lost(int code) noexcept {
    return code == EPIPE || code == ECONNRESET || code == ECONNABORTED || code == ENOTCONN || code == ESHUTDOWN;
}

/// The retry rule for a request on a reused connection that failed: retry once on a new connection when nothing of
/// the request was written (the server cannot have seen it, whatever the method), or when the method is idempotent
/// and the connection was lost (reset, broken pipe, or closed) before any byte of the response arrived. A timeout, a
/// cancellation or a malformed response is never retried.
inline bool client_may_retry(std::exception_ptr failed, const client_exchange& x,
                             const client_request_spec& s) noexcept {
    if (failed) {
        try {
            std::rethrow_exception(failed);
        } catch (const std::system_error& e) {
            if (e.code().category() != std::system_category() || !client_connection_lost(e.code().value()))
                return false;
        } catch (...) {
            return false;
        }
    }
    return x.nothing_written || (client_idempotent(s) && !x.got_bytes);
}

/// Rejects header fields that could split the request or are not fields at all.
inline void client_check_headers(const http::headers& h, std::string_view method, std::string_view where) {
    for (const field& f : h) {
        if (!is_token(f.name))
            throw std::invalid_argument(coring::detail::str_cat("coring: http: ", method, " ", where,
                                                                ": invalid header name \"", f.name, "\""));
        if (unsafe_field(f.value))
            throw std::invalid_argument(coring::detail::str_cat("coring: http: ", method, " ", where, ": header \"",
                                                                f.name, "\" has CR, LF or NUL in its value"));
    }
}

/// The request line and header block: Host (unless given), the client's default headers not overridden, the
/// request's own (framing fields excepted: the client decides those), and Content-Length when there is a body or
/// the method expects one.
inline void client_append_head(std::string& out, const client_request_spec& s, const url& u,
                               const http::headers& defaults) {
    out += s.method;
    out += ' ';
    out += u.target;
    out += " HTTP/1.1\r\n";
    if (!s.headers.contains("Host")) append_field(out, "Host", u.authority());
    for (const field& f : defaults) {
        if (s.headers.contains(f.name) || iequals(f.name, "Host") || client_framing_field(f.name)) continue;
        // The defaults are the client's, sent on every hop, so a redirect's rules apply to them as to the request's.
        if (s.cross_origin && client_field_in(f.name, client_credential_fields)) continue;
        if (s.body_dropped && client_field_in(f.name, client_body_fields)) continue;
        append_field(out, f.name, f.value);
    }
    for (const field& f : s.headers)
        if (!client_framing_field(f.name)) append_field(out, f.name, f.value);
    if (!s.body.empty() || s.method == "POST" || s.method == "PUT" || s.method == "PATCH") {
        out += "Content-Length: ";
        append_number(out, s.body.size());
        out += "\r\n";
    }
    out += "\r\n";
}

/// A protocol_error about the current hop of `x`.
inline protocol_error client_response_error(const client_exchange& x, std::string_view why) {
    return protocol_error(x.method, x.where, std::string(why));
}

/// The response is complete: hands the connection back to the pool when it can carry another request (keep-alive
/// on both sides, nothing unexpected after the response, not a 408: the server is dropping it), else closes it.
inline void client_complete(client_exchange& x) {
    x.done = true;
    client_connection& c = *x.conn;
    const bool reusable =
        x.parser->keep_alive() && c.begin == c.end && c.drained() && !x.close_after && x.parser->status_code() != 408;
    c.begin = c.end = 0;
    ++c.responses;
    if (reusable && x.host) x.pool->put_back(*x.host, std::move(x.conn));
    x.drop();
}

/// A connection for the current hop: an idle one of its host when there is one (unless `fresh`), else a new one,
/// once the host's connection limit lets it.
inline task<> client_acquire(client_exchange& x, bool fresh) {
    if (x.pool->closed) throw std::logic_error("coring: http: the client is closed");
    client_host& h = x.pool->host(client_pool_key(x.current));
    if (x.host != &h) {
        x.permit.reset();
        x.host = &h;
    }
    if (!x.permit.held() && h.limit) {
        auto acquiring = timeout_at(x.deadline, h.limit->acquire());
        co_await acquiring;
        x.permit = client_permit(h.limit.get());
    }
    if (!fresh) {
        if (auto c = x.pool->take_idle(h)) {
            x.conn = std::move(c);
            x.reused = true;
            co_return;
        }
    }
    const std::chrono::milliseconds ct = x.pool->opts.connect_timeout;
    const client_clock::time_point by = std::min(x.deadline, client_deadline(ct));
    std::unique_ptr<client_connection> c;
    bool connect_late = false;
    try {
        const client_tls_context* tls = nullptr;
#if CORING_HTTP_TLS
        if (x.current.scheme == "https") tls = &x.pool->tls_context();
#endif
        task<std::unique_ptr<client_connection>> connecting = client_connection::open(x.current, by, tls);
        c = co_await std::move(connecting);
    } catch (const coring::timeout_error&) {
        if (by >= x.deadline) throw; // the request's own timeout: reported as such
        connect_late = true;
    }
    if (connect_late)
        throw http::client_timeout_error(x.where, coring::detail::str_cat("coring: http: ", x.method, " ", x.where,
                                                                          ": connect timed out after ",
                                                                          std::to_string(ct.count()), " ms"));
    ++x.pool->opened;
    x.conn = std::move(c);
    x.reused = false;
}

/// 1xx: an interim response (100 Continue, 103 Early Hints) that the final one follows.
inline bool client_interim(int status) noexcept { return status >= 100 && status < 200; }

/// Sends the request of the current hop and reads the head of its final response (interim 1xx responses are
/// skipped); body bytes that came with it are in x.body. False when the server closed the connection before a
/// (final) response.
inline task<bool> client_send_and_read_head(client_exchange& x, const client_request_spec& s) {
    client_connection& c = *x.conn;
    x.nothing_written = true;
    x.got_bytes = false;
    // A small body goes out with the head in one send; a large one is sent from where it is, not copied.
    constexpr std::size_t inline_body = 16 * 1024;
    c.out.clear();
    client_append_head(c.out, s, x.current, x.pool->opts.default_headers);
    const bool body_inline = s.body.size() <= inline_body;
    if (body_inline) c.out += s.body;
    {
        // The first send alone: if it fails, nothing reached the server (the retry rule relies on that).
        auto first = c.write_some(c.out, x.deadline);
        const std::size_t sent = co_await first;
        x.nothing_written = false;
        if (sent < c.out.size()) {
            auto rest = c.write_all(std::string_view(c.out).substr(sent), x.deadline);
            co_await rest;
        }
        if (!body_inline) {
            auto body = c.write_all(s.body, x.deadline);
            co_await body;
        }
    }

    x.headers.clear();
    x.body.clear();
    x.body_pos = 0;
    x.parser.emplace(x.headers, x.body, x.pool->limits);
    x.parser->set_trailers(x.trailers);
    message_parser& p = *x.parser;
    p.expect_no_body(x.head);
    bool status_known = false; // the status line of the message being parsed has been fed
    bool final_done = false;
    for (;;) {
        if (c.begin == c.end) {
            auto reading = c.read_some(std::span(c.buffer(), client_connection::buffer_size), x.deadline);
            const std::size_t n = co_await reading;
            if (n == 0) {
                if (!p.in_message()) co_return false; // nothing, or only interim responses
                p.finish();
                throw client_response_error(
                    x, coring::detail::str_cat("response cut short by the server closing (", p.error_reason(), ")"));
            }
            x.got_bytes = true;
            c.begin = 0;
            c.end = n;
        }
        // The status line is fed alone: whether a body follows depends on the status (1xx, 204 and 304 have none
        // whatever Content-Length says), and the parser must know that before it reaches the end of the headers.
        const char* data = c.buffer() + c.begin;
        std::size_t len = c.end - c.begin;
        bool line_end = false;
        if (!status_known)
            if (const void* nl = std::memchr(data, '\n', len)) {
                len = static_cast<std::size_t>(static_cast<const char*>(nl) - data) + 1;
                line_end = true;
            }
        const auto r = p.feed(data, len);
        c.begin += r.consumed;
        if (r.state == parse_state::error)
            throw client_response_error(x, coring::detail::str_cat("malformed response (", p.error_reason(), ")"));
        if (line_end && !status_known && p.status_code() != 0) {
            status_known = true;
            const int code = p.status_code();
            if (code == 101)
                throw client_response_error(x, "unexpected 101 Switching Protocols (the client asked for no upgrade)");
            p.expect_no_body(x.head || client_interim(code) || code == 204 || code == 304);
        }
        if (r.state == parse_state::message_done) {
            if (client_interim(p.status_code())) { // 100 Continue, 103 Early Hints: the real response follows
                p.next();
                p.expect_no_body(x.head);
                status_known = false;
                continue;
            }
            final_done = true;
        }
        if (final_done || (p.headers_done() && !client_interim(p.status_code()))) break;
    }
    x.status = p.status_code();
    x.version_minor = p.version_minor();
    if (final_done) client_complete(x);
    co_return true;
}

/// Parses more of the response: returns once new body bytes are in x.body or the response is complete.
inline task<> client_pump(client_exchange& x) {
    if (x.done) co_return;
    if (!x.conn) throw std::logic_error("coring: http: read from a response stream that failed or was closed");
    client_connection& c = *x.conn;
    message_parser& p = *x.parser;
    for (;;) {
        if (c.begin == c.end) {
            auto reading = c.read_some(std::span(c.buffer(), client_connection::buffer_size), x.deadline);
            const std::size_t n = co_await reading;
            if (n == 0) {
                c.begin = c.end = 0;
                if (p.finish() == parse_state::message_done) { // a body delimited by the end of the connection
                    // Over TLS, only an end announced with close_notify delimits it: an attacker can end the TCP
                    // stream anywhere (tls::truncated, named by the caller).
                    if (std::exception_ptr cut = c.cut_short()) std::rethrow_exception(cut);
                    client_complete(x);
                    co_return;
                }
                throw client_response_error(
                    x,
                    coring::detail::str_cat("response body cut short by the server closing (", p.error_reason(), ")"));
            }
            c.begin = 0;
            c.end = n;
        }
        const std::size_t had = x.body.size();
        const auto r = p.feed(c.buffer() + c.begin, c.end - c.begin);
        c.begin += r.consumed;
        if (r.state == parse_state::error)
            throw client_response_error(x, coring::detail::str_cat("malformed response body (", p.error_reason(), ")"));
        if (r.state == parse_state::message_done) {
            client_complete(x);
            co_return;
        }
        if (x.body.size() > had) co_return;
    }
}

/// Reads and drops the body of a redirect, so that its connection can serve the next hop; a large one is not worth
/// it: the connection is closed instead.
inline task<> client_discard_body(client_exchange& x) {
    constexpr std::size_t worth_reading = 64 * 1024;
    std::size_t dropped = 0;
    while (!x.done) {
        dropped += x.body.size();
        x.body.clear();
        if (dropped > worth_reading) {
            x.drop();
            break;
        }
        task<> more = client_pump(x);
        co_await std::move(more);
    }
    x.body.clear();
    x.body_pos = 0;
}

/// Whether a 408 answer is worth one more try on a new connection (RFC 9110 15.5.9 allows it): on a reused connection
/// it most likely means the server timed the idle connection out as the request arrived, not that the request was
/// slow. Only for an idempotent request: the server may have read and acted on it anyway.
inline bool client_retry_408(const client_exchange& x, const client_request_spec& s) noexcept {
    return x.status == 408 && x.reused && client_idempotent(s);
}

/// One hop: a connection, the request, the head of the response. A reused connection that turns out to be dead
/// (lost, or answered with a 408) is replaced once, by the retry rule (client_may_retry, client_retry_408).
inline task<> client_run_hop(client_exchange& x, const client_request_spec& s) {
    for (int attempt = 0;; ++attempt) {
        task<> acquiring = client_acquire(x, attempt > 0);
        co_await std::move(acquiring);
        std::exception_ptr failed;
        bool answered = false;
        try {
            task<bool> exchanging = client_send_and_read_head(x, s);
            answered = co_await std::move(exchanging);
        } catch (...) {
            failed = std::current_exception();
        }
        bool retry = false;
        if (!failed && answered) {
            if (attempt > 0 || !client_retry_408(x, s)) co_return;
            retry = true;
        } else {
            retry = attempt == 0 && x.reused && client_may_retry(failed, x, s);
        }
        x.conn.reset(); // never pooled again: its state is unknown (the permit stays for the retry)
        x.done = false; // a 408 may have completed (and released its connection)
        if (retry) continue;
        if (failed) std::rethrow_exception(failed);
        throw std::system_error(ECONNRESET, std::system_category(),
                                coring::detail::str_cat("coring: http: ", x.method, " ", x.where,
                                                        ": the server closed the connection without a response"));
    }
}

/// The statuses whose Location is followed.
inline bool client_is_redirect(int status) noexcept {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/// Where a redirect leads; std::invalid_argument naming the URL and the Location when it is not a usable URL.
inline url client_redirect_target(const client_exchange& x, std::string_view location) {
    std::string why;
    try {
        return resolve_reference(x.current, location);
    } catch (const std::invalid_argument& e) {
        why = e.what();
    }
    throw std::invalid_argument(
        coring::detail::str_cat("coring: http: ", x.method, " ", x.where, ": redirect to an invalid Location: ", why));
}

/// Sends the request and follows redirects until the head of the final response has arrived.
inline task<> client_run_exchange(client_exchange& x, client_request_spec& s, bool follow, std::size_t max_redirects) {
    for (std::size_t redirects = 0;;) {
        x.where = x.current.to_string();
        x.method = s.method;
#if !CORING_HTTP_TLS
        if (x.current.scheme != "http")
            throw std::invalid_argument(coring::detail::str_cat(
                "coring: http: ", s.method, " ", x.where,
                ": HTTPS needs coring::http built with OpenSSL (coring::tls, CORING_HTTP_TLS)"));
#endif
        x.head = s.method == "HEAD";
        x.done = false;
        task<> hop = client_run_hop(x, s);
        co_await std::move(hop);
        if (!follow || !client_is_redirect(x.status)) co_return;
        const auto location = x.headers.get("Location");
        if (!location) co_return; // nowhere to go: the 3xx is the answer
        url next = client_redirect_target(x, *location);
        if (redirects == max_redirects)
            throw too_many_redirects(x.where, coring::detail::str_cat("coring: http: ", s.method, " ", x.where,
                                                                      ": more than ", std::to_string(max_redirects),
                                                                      " redirects (the request was for ",
                                                                      x.first.to_string(), ")"));
        ++redirects;
        task<> discarding = client_discard_body(x);
        co_await std::move(discarding);
        // 303 means "GET the result there"; after a POST, 301 and 302 do the same in browsers and aiohttp; 307 and
        // 308 repeat the request as it was.
        if ((x.status == 303 && s.method != "HEAD") || ((x.status == 301 || x.status == 302) && s.method == "POST")) {
            s.method = "GET";
            s.body.clear();
            for (std::string_view name : client_body_fields) s.headers.remove(name);
            s.body_dropped = true;
        }
        // Credentials are for the origin they were given for, not for whoever it redirects to; once the request has
        // left it, they stay behind for the rest of the chain (a later hop back is the redirecting site's choice).
        if (!client_same_origin(next, x.current)) {
            for (std::string_view name : client_credential_fields) s.headers.remove(name);
            s.headers.remove("Host");
            s.cross_origin = true;
        }
        x.current = std::move(next);
    }
}

/// Rethrows a failure of the request `x` so that it names the URL: a coring::timeout_error becomes an
/// http::client_timeout_error, a std::system_error gets the method and URL in front of its message (same code);
/// cancellation and the client's own errors pass unchanged.
[[noreturn]] inline void client_rethrow_named(std::exception_ptr failed, const client_exchange& x) {
    try {
        std::rethrow_exception(failed);
    } catch (const http::client_timeout_error&) {
        throw;
    } catch (const coring::timeout_error&) {
        throw http::client_timeout_error(x.where, coring::detail::str_cat("coring: http: ", x.method, " ", x.where,
                                                                          ": timed out after ",
                                                                          std::to_string(x.total.count()), " ms"));
#if CORING_HTTP_TLS
    } catch (const coring::tls::error& e) {
        // "coring: tls handshake with h:443: certificate verify failed: ..." becomes "coring: http: GET https://h/:
        // tls handshake with h:443: ...", of the same type (tls::truncated stays one).
        std::string_view what = e.what();
        if (what.starts_with("coring: http: ")) throw;
        if (what.starts_with("coring: ")) what.remove_prefix(8);
        std::string named = coring::detail::str_cat("coring: http: ", x.method, " ", x.where, ": ", what);
        if (dynamic_cast<const coring::tls::truncated*>(&e)) throw coring::tls::truncated(std::move(named));
        throw coring::tls::error(std::move(named));
#endif
    } catch (const std::system_error& e) {
        std::string_view what = e.what();
        if (what.starts_with("coring: http: ")) throw;
        // "coring: connect 127.0.0.1:9: Connection refused" becomes "coring: http: GET http://127.0.0.1:9/:
        // connect 127.0.0.1:9: Connection refused" (system_error appends the code's message again).
        if (what.starts_with("coring: ")) what.remove_prefix(8);
        const std::string tail = ": " + e.code().message();
        if (what.ends_with(tail)) what.remove_suffix(tail.size());
        throw std::system_error(e.code(),
                                coring::detail::str_cat("coring: http: ", x.method, " ", x.where, ": ", what));
    }
}

} // namespace detail

} // namespace coring::http
