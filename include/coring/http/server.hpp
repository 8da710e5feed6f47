#pragma once

#include <coring/detail/str_cat.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/http/detail/parser.hpp>
#include <coring/http/json.hpp>
#include <coring/http/message.hpp>
#include <coring/http/router.hpp>
#include <coring/http/websocket.hpp>
#include <coring/net/address.hpp>
#include <coring/net/tcp.hpp>
#include <coring/sync/event.hpp>
#include <coring/task/shield.hpp>
#include <coring/task/spawn.hpp>
#include <coring/task/task.hpp>
#include <coring/time/timeout.hpp>
#if CORING_HTTP_TLS
#include <coring/tls/context.hpp>
#include <coring/tls/stream.hpp>
#endif

#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <typeinfo>
#include <utility>

namespace coring::http {

/// A server's limits and timeouts. Requests beyond a limit are answered with 400, 413, 414 or 431 and the
/// connection is closed, since the rest of the stream can no longer be trusted.
struct server_options {
    std::size_t max_target = 8 * 1024;        ///< request target length (414)
    std::size_t max_header_bytes = 32 * 1024; ///< all header names and values together (431)
    std::size_t max_headers = 100;            ///< header fields per request (431)
    std::size_t max_body = 1024 * 1024;       ///< request body (413)
    /// From a request's first byte to the end of its headers: a client sending a byte at a time (slowloris) is cut
    /// off here, with 408.
    std::chrono::milliseconds header_timeout{10'000};
    /// From the end of the headers to the end of the body (408 when it passes).
    std::chrono::milliseconds body_timeout{30'000};
    /// How long a keep-alive connection may wait for its next request before the server closes it.
    std::chrono::milliseconds idle_timeout{60'000};
    /// The Server header ("" for none).
    std::string server_name = "coring";
    /// Called with a request whose handler threw (the client gets a 500; a request_json_error from request::json()
    /// is a 400 instead and is not reported). Empty means one line on stderr.
    std::function<void(const request&, std::exception_ptr)> on_handler_error{};
};

/// Writes the body of a streamed response (response::streamed): each write() is sent as one chunk.
class body_writer {
public:
    /// Sends `data` as one chunk (nothing for empty data, which would end the body). Throws std::system_error when
    /// the client went away (tls::error over TLS).
    task<> write(std::string_view data) {
        if (data.empty()) co_return;
        std::string_view out = data;
        if (chunked_) {
            char head[24];
            const int n = std::snprintf(head, sizeof head, "%zx\r\n", data.size());
            buf_.assign(head, static_cast<std::size_t>(n));
            buf_.append(data);
            buf_.append("\r\n");
            out = buf_;
        }
        if (tcp_) {
            co_await tcp_->write_all(out);
        } else {
            task<> writing = other_write_(other_, out);
            co_await std::move(writing);
        }
    }

private:
    friend class server;
    /// A writer to a plain TCP connection: its own awaitable, no type erasure.
    body_writer(tcp_stream& s, bool chunked) noexcept : tcp_(&s), chunked_(chunked) {}
    /// A writer to any other stream (a tls::stream) whose write_all(std::string_view) returns task<>.
    template <class S>
    body_writer(S& s, bool chunked) noexcept
        : other_(&s),
          other_write_([](void* p, std::string_view d) -> task<> { return static_cast<S*>(p)->write_all(d); }),
          chunked_(chunked) {}
    tcp_stream* tcp_ = nullptr;                                // the connection, when it is plain TCP
    void* other_ = nullptr;                                    // else the stream
    task<> (*other_write_)(void*, std::string_view) = nullptr; // and its write_all
    bool chunked_;
    std::string buf_;
};

namespace detail {

/// The Date header's value, formatted once per second (RFC 9110 IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT").
inline std::string_view http_date() noexcept {
    thread_local std::time_t cached_at = -1;
    thread_local char text[40];
    thread_local std::size_t len = 0;
    const std::time_t now = std::time(nullptr);
    if (now != cached_at) {
        std::tm tm{};
        ::gmtime_r(&now, &tm);
        len = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_at = now;
    }
    return {text, len};
}

} // namespace detail

/// A WebSocket route's handler (server::websocket): gets the upgrade request and the connection, which the server
/// closes (closing handshake, code 1000; 1011 when the handler threw) once the handler returns.
using websocket_handler = std::function<task<>(request&, websocket&)>;

/// How a WebSocket route accepts connections.
struct websocket_route_options {
    websocket_options limits{}; ///< message and frame limits, keep-alive pings, the close timeout
    /// Subprotocols this route speaks, preferred first: the first the client offers (Sec-WebSocket-Protocol) that is
    /// here is agreed on (websocket::subprotocol()); none in common: no subprotocol.
    std::vector<std::string> subprotocols{};
    /// Called with the upgrade request (its Origin header, say): false refuses it with 403. Empty: every origin.
    std::function<bool(const request&)> check_origin{};
};

namespace detail {

struct ws_upgrade {
    websocket_handler handler;
    websocket_options limits;
    std::string subprotocol;
    std::optional<ws_deflate_params> deflate; // agreed in the handshake
};

struct ws_route {
    websocket_handler handler;
    websocket_route_options options;
};

} // namespace detail

/// An HTTP/1.1 server (aiohttp.web, FastAPI): routes requests to coroutine handlers, one task per connection.
///
///     coring::http::server app;
///     app.get("/hello/{name}", [](coring::http::request& r) -> coring::task<coring::http::response> {
///         co_return coring::http::response::json("{\"hello\": \"" + r.param("name") + "\"}");
///     });
///     co_await app.serve(listener);           // until app.shutdown()
///
/// Keep-alive and pipelining (responses in request order, written together when requests arrive together);
/// request bodies with Content-Length or chunked; `Expect: 100-continue` (answered when the handler is about to
/// need the body, i.e. at once, unless a limit refuses it first); HEAD served by GET routes; responses sized or
/// streamed (chunked). Requests are parsed by llhttp in strict mode. Limits and timeouts come from server_options.
/// A handler that throws answers 500 (server_options::on_handler_error hears of it), except for a
/// request_json_error, which request::json() throws for a body that is not JSON: 400 with nlohmann/json's reason.
///
/// HTTPS (with coring::tls, CORING_HTTP_TLS): `co_await app.serve(listener, tls::context::server("cert.pem",
/// "key.pem"))` or `app.listen(address, ctx)`; each connection does the TLS handshake in its own task (within
/// header_timeout), then the same request loop over the tls::stream; HTTP/1.1 over ALPN. The request loop, the body
/// writer and the lingering close are templates over the stream type: the plain path has no indirection per read.
///
/// shutdown() stops accepting, closes idle connections at once, lets requests in progress finish (their responses
/// say "Connection: close"), and after `grace` cancels whatever is left. The server must outlive serve().
class server {
public:
    /// A server with these limits and timeouts; it serves nothing until serve() or listen().
    explicit server(server_options options = {}) : opts_(std::move(options)) {}
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// Adds a route for `method` (see router).
    server& route(std::string_view method, std::string_view pattern, handler h) {
        routes_.add(method, pattern, std::move(h));
        return *this;
    }
    /// A GET route (see route()); it serves HEAD requests too, without the body.
    server& get(std::string_view pattern, handler h) { return route("GET", pattern, std::move(h)); }
    /// A POST route (see route()).
    server& post(std::string_view pattern, handler h) { return route("POST", pattern, std::move(h)); }
    /// A PUT route (see route()).
    server& put(std::string_view pattern, handler h) { return route("PUT", pattern, std::move(h)); }
    /// A PATCH route (see route()).
    server& patch(std::string_view pattern, handler h) { return route("PATCH", pattern, std::move(h)); }
    /// A DELETE route (`delete` is a C++ keyword).
    server& del(std::string_view pattern, handler h) { return route("DELETE", pattern, std::move(h)); }

    /// A WebSocket route (aiohttp's WebSocketResponse): a GET with a valid opening handshake (RFC 6455 section 4.2:
    /// Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Version: 13, a 16-byte Sec-WebSocket-Key) is answered
    /// 101 and the connection goes to `h` for as long as it runs; anything else gets 426 (not a WebSocket handshake,
    /// or another version: Sec-WebSocket-Version: 13 says which), 400 (a malformed key) or 403 (check_origin said
    /// no). A shutdown() sends every open WebSocket a close frame with 1001 (going away), then cancels the handlers
    /// still running after the grace period.
    server& websocket(std::string_view pattern, websocket_handler h, websocket_route_options options = {}) {
        if (options.limits.permessage_deflate && !detail::ws_deflate_available)
            throw std::invalid_argument("coring: websocket route " + std::string(pattern) +
                                        ": permessage_deflate needs coring built with zlib (CORING_HTTP_ZLIB)");
        auto r = std::make_shared<const detail::ws_route>(detail::ws_route{std::move(h), std::move(options)});
        return route("GET", pattern, [r](request& req) -> task<response> { co_return ws_handshake(req, *r); });
    }

    /// Serves connections from `listener` until shutdown() (then returns once every connection has ended).
    /// Throws std::logic_error when already serving.
    task<> serve(tcp_listener& listener) {
        if (serving_) throw std::logic_error("coring: http::server::serve called twice");
        serving_ = true; // stopped_ stays as it is: a shutdown() that came before serve() still counts
#if CORING_HTTP_TLS
        tls_.reset();
#endif
        co_await run(listener);
    }

#if CORING_HTTP_TLS
    /// Serves HTTPS: as serve(listener), each connection beginning with the TLS handshake (a server context:
    /// tls::context::server(cert, key)). The handshake runs in the connection's own task, within
    /// server_options::header_timeout (a client that stalls it is dropped, without a response), and a failed one
    /// closes the connection silently. HTTP/1.1 over ALPN: a context without ALPN protocols of its own gets
    /// {"http/1.1"} (set on it, and so on its copies), so that clients offering h2 and http/1.1 pick http/1.1; a
    /// connection that agreed on another protocol through the context's own list (h2, say) is closed after the
    /// handshake, since this server speaks HTTP/1.1 only. Only with coring::tls (CORING_HTTP_TLS).
    task<> serve(tcp_listener& listener, tls::context ctx) {
        if (serving_) throw std::logic_error("coring: http::server::serve called twice");
        if (!ctx.is_server())
            throw std::invalid_argument("coring: http::server::serve needs a server tls::context (context::server)");
        serving_ = true;
        if (!ctx.has_alpn()) ctx.set_alpn({"http/1.1"});
        tls_.emplace(std::move(ctx));
        co_await run(listener);
    }

    /// Binds `at` and serves HTTPS until shutdown() (see serve(listener, ctx)).
    task<> listen(address at, tls::context ctx, const listen_options& options = {}) {
        tcp_listener l = tcp_listener::bind(at, options);
        local_ = l.local_address();
        task<> serving = serve(l, std::move(ctx));
        co_await std::move(serving);
    }

    /// Serves one TLS connection whose handshake is done (tls::stream::accept) until it ends, as serve_stream(tcp).
    task<> serve_stream(tls::stream s) {
        while (!conns_.empty() && conns_.front().finished) conns_.pop_front();
        conns_.emplace_back();
        conn& c = conns_.back();
        ++live_;
        drained_.clear(); // set when the last one ended during a shutdown: not drained any more
        co_await connection(std::move(s), c);
    }
#endif

private:
    /// serve()'s body: the accept loop until shutdown(), then the graceful stop.
    task<> run(tcp_listener& listener) {
        auto acceptor = spawn(accept_loop(listener));
        co_await stopped_.wait(); // set by shutdown()
        acceptor.cancel();
        try {
            co_await acceptor;
        } catch (const cancelled_error&) {}
        // Idle connections end now; busy ones finish their request, then close. A connection accepted in this very
        // turn (its accept completed as the acceptor was being cancelled) has not started yet, and a task cancelled
        // before it starts never runs, so it would never mark its record finished: left alone, it sees closing_ and
        // ends by itself as soon as it starts.
        for (conn& c : conns_)
            if (c.idle && c.started && !c.finished) c.h.cancel();
        if (live_ > 0) {
            bool late = false;
            try {
                co_await timeout(grace_, drained_.wait());
            } catch (const coring::timeout_error&) {
                late = true;
            }
            if (late) {
                for (conn& c : conns_)
                    if (c.started && !c.finished) c.h.cancel();
                co_await drained_.wait();
            }
        }
        conns_.clear();
        serving_ = false;
    }

public:
    /// Binds `at` and serves until shutdown(). The bound address (port 0 picks one) is local_address() once
    /// serving has begun.
    task<> listen(address at, const listen_options& options = {}) {
        tcp_listener l = tcp_listener::bind(at, options);
        local_ = l.local_address();
        co_await serve(l);
    }

    /// Serves one connection that is already open (a socketpair, an inherited socket, a listener of your own) until
    /// it ends. shutdown() lets its current request finish and closes it between requests, but does not cancel it
    /// after the grace period: cancel the awaiting task for that.
    task<> serve_stream(tcp_stream s) {
        while (!conns_.empty() && conns_.front().finished) conns_.pop_front();
        conns_.emplace_back();
        conn& c = conns_.back();
        ++live_;
        drained_.clear(); // set when the last one ended during a shutdown: not drained any more
        s.enable_multishot();
        co_await connection(std::move(s), c);
    }

    /// Starts a graceful stop (see the class comment); serve() returns when it is complete. Loop thread only.
    void shutdown(std::chrono::milliseconds grace = std::chrono::seconds(10)) noexcept {
        if (closing_) return;
        closing_ = true;
        grace_ = grace;
        for (http::websocket* ws : websockets_) ws->start_close(close_code::going_away);
        stopped_.set();
    }

    /// The address listen() bound.
    [[nodiscard]] const address& local_address() const noexcept { return local_; }
    /// Connections open now.
    [[nodiscard]] std::size_t connections() const noexcept { return live_; }
    /// Connections accepted by serve() so far (one listener per loop: how evenly the kernel spread them).
    [[nodiscard]] std::size_t accepted() const noexcept { return accepted_; }
    /// The options the server was made with.
    [[nodiscard]] const server_options& options() const noexcept { return opts_; }

private:
    struct conn {
        join_handle<void> h;
        bool idle = true;      // waiting for a request's first byte
        bool started = false;  // the connection task has begun (only then does cancelling it end it through its body)
        bool finished = false; // the connection task has ended
    };

    task<> accept_loop(tcp_listener& listener) {
        for (;;) {
            tcp_stream s = co_await listener.accept();
            s.set_nodelay(true);  // responses are written whole; Nagle would only delay them
            s.enable_multishot(); // one receive armed for the connection's life, not one per request
            // Forget connections that ended, so that a long-running server does not accumulate records.
            while (!conns_.empty() && conns_.front().finished) conns_.pop_front();
            if (++accepted_ % 256 == 0) conns_.remove_if([](const conn& c) { return c.finished; });
            conns_.emplace_back();
            conn& c = conns_.back();
            ++live_;
            drained_.clear(); // set when the last one ended during a shutdown: not drained any more
#if CORING_HTTP_TLS
            if (tls_) {
                c.h = spawn(tls_connection(std::move(s), c, *tls_));
                continue;
            }
#endif
            c.h = spawn(connection(std::move(s), c));
        }
    }

    /// Marks a connection's record finished when its task ends (and the server drained when it was the last one).
    struct conn_end {
        server* self;
        conn* c;
        bool armed = true;
        ~conn_end() {
            if (!armed) return;
            c->finished = true;
            if (--self->live_ == 0 && self->closing_) self->drained_.set();
        }
    };

#if CORING_HTTP_TLS
    /// An accepted HTTPS connection: the handshake (within header_timeout, counted as idle so that a shutdown ends
    /// it at once), then connection() over the TLS stream.
    task<> tls_connection(tcp_stream s, conn& c, tls::context ctx) {
        c.started = true;
        conn_end guard{this, &c};
        tls::stream t;
        bool ok = false;
        try {
            task<tls::stream> handshaking = tls::stream::accept(std::move(ctx), std::move(s));
            t = co_await timeout(opts_.header_timeout, std::move(handshaking));
            ok = true;
        } catch (...) {
            // A failed, stalled or cancelled handshake: nothing to answer (the TLS layer sent its alert).
        }
        if (!ok) co_return;
        const std::string_view proto = t.alpn();
        if (!proto.empty() && proto != "http/1.1" && proto != "http/1.0") {
            try {
                co_await shield(t.close());
            } catch (...) {}
            co_return;
        }
        task<> serving = connection(std::move(t), c);
        guard.armed = false; // connection() marks the end now
        co_await std::move(serving);
    }
#endif

    template <class S>
    task<> connection(S s, conn& c) {
        c.started = true;
        conn_end guard{this, &c};
        bool linger = false;
        try {
            linger = co_await serve_connection(s, c);
        } catch (const cancelled_error&) {
        } catch (const std::system_error&) {
            // The client reset or vanished: nothing to answer.
#if CORING_HTTP_TLS
        } catch (const tls::error&) {
            // A TLS client that ended without close_notify (tls::truncated: most do, between requests), or sent a
            // record that does not decrypt: nothing to answer either.
#endif
        }
        try {
            if (linger) co_await shield(lingering_close(s));
            co_await shield(s.close());
        } catch (...) {}
    }

    /// Closing a socket that still has unread input makes the kernel send a reset, which can destroy the response
    /// before the client has read it. So, when the server ends a connection, it half-closes, then reads and drops
    /// what the client still sends, for a short while (nginx's lingering close).
    template <class S>
    static task<> lingering_close(S& s) {
        co_await s.shutdown();
        char sink[4096];
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        for (std::size_t total = 0; total < 256 * 1024;) {
            const std::size_t n = co_await timeout_at(until, s.read(std::span(sink)));
            if (n == 0) break;
            total += n;
        }
    }

    enum class phase { none, idle, head, body };

    std::chrono::milliseconds timeout_of(phase p) const noexcept {
        return p == phase::idle ? opts_.idle_timeout : p == phase::head ? opts_.header_timeout : opts_.body_timeout;
    }

    /// Serves requests until the connection should end; true when the server ends it (then it lingers), false when
    /// the client did.
    template <class S>
    task<bool> serve_connection(S& s, conn& c) {
        const detail::parse_limits limits{opts_.max_target, opts_.max_header_bytes, opts_.max_headers, opts_.max_body};
        request req;
        detail::message_parser parser(req, limits);
        constexpr std::size_t in_size = 16 * 1024;
        auto in = std::make_unique<char[]>(in_size);
        std::size_t begin = 0, end = 0;
        std::string out;
        std::chrono::steady_clock::time_point deadline{};
        phase at = phase::none;

        for (;;) {
            // Answer every complete request already buffered (pipelining) before reading or writing.
            while (begin < end) {
                const auto r = parser.feed(in.get() + begin, end - begin);
                begin += r.consumed;
                if (r.state == detail::parse_state::error) {
                    append_error(out, parser.error_status());
                    co_await s.write_all(out);
                    co_return true;
                }
                if (r.state == detail::parse_state::need_more) break;
                // One complete request.
                at = phase::none;
                c.idle = false;
                // Routing and the handler, awaited right here: no coroutine frame of the server's own per request.
                response res;
                const auto m = routes_.find(req.method, req.path(), req.params);
                if (!m.h) {
                    res = not_routed(m.status, m.allow);
                } else {
                    std::exception_ptr failure;
                    try {
                        task<response> handling = (*m.h)(req);
                        res = co_await std::move(handling);
                        check_response(res);
                    } catch (const cancelled_error&) {
                        throw;
                    } catch (const request_json_error& e) {
                        // request::json() on a body that is not JSON: the client's mistake, not a handler failure.
                        res = response::text(coring::detail::str_cat("Bad Request: ", e.reason(), "\n"), 400);
                    } catch (...) {
                        failure = std::current_exception();
                    }
                    if (failure) {
                        report(req, failure);
                        res = response::text("Internal Server Error\n", 500);
                    }
                }
                if (res.upgrade && res.status == 101) {
                    // The WebSocket handshake succeeded: the connection is the handler's from here, with whatever
                    // the client sent past its request.
                    append_upgrade_head(out, res);
                    co_await s.write_all(out);
                    out.clear();
                    std::string leftover(in.get() + begin, end - begin);
                    co_await websocket_session(s, req, *res.upgrade, std::move(leftover));
                    co_return false;
                }
                bool keep = parser.keep_alive() && !closing_; // a shutdown during the handler ends it here
                if (auto conn_header = res.headers.get("Connection");
                    conn_header && detail::has_token(*conn_header, "close"))
                    keep = false;
                if (res.stream && !body_allowed(res.status)) {
                    // 204 and 304 have no body, streamed or not (RFC 9110 sections 15.3.5 and 15.4.5): the producer
                    // is not run, and no framing header is sent that would make a client wait for chunks.
                    append_head(out, req, res, keep, -3);
                } else if (res.stream) {
                    const bool chunked = req.version_minor >= 1;
                    if (!chunked) keep = false; // HTTP/1.0: the end of the body is the end of the connection
                    append_head(out, req, res, keep, chunked ? -1 : -2);
                    co_await s.write_all(out);
                    out.clear();
                    if (req.method != "HEAD") {
                        body_writer w(s, chunked);
                        task<> producing = res.stream(w);
                        co_await std::move(producing);
                        if (chunked) co_await s.write_all("0\r\n\r\n");
                    }
                } else {
                    append_head(out, req, res, keep, static_cast<long long>(res.body.size()));
                    if (req.method != "HEAD" && body_allowed(res.status)) out += res.body;
                }
                if (!keep) {
                    if (!out.empty()) co_await s.write_all(out);
                    co_return begin < end || parser.in_message(); // linger only over input not read yet
                }
                parser.next();
            }
            if (parser.expect_continue()) {
                out += "HTTP/1.1 100 Continue\r\n\r\n";
                parser.continue_sent();
            }
            if (!out.empty()) {
                co_await s.write_all(out);
                out.clear();
            }
            begin = end = 0;

            // Wait for more, within the deadline of the phase the request is in (each phase's clock starts when it
            // begins, so trickling bytes does not extend it).
            const phase now_at = !parser.in_message() ? phase::idle : parser.headers_done() ? phase::body : phase::head;
            if (now_at != at) {
                at = now_at;
                deadline = coring::detail::coarse_deadline_after(timeout_of(at)); // seconds-long: a tick late is fine
            }
            c.idle = at == phase::idle;
            if (c.idle && closing_) co_return false; // between requests: the graceful stop closes here
            std::size_t n = 0;
            bool late = false;
            try {
                n = co_await timeout_at(deadline, s.read(std::span(in.get(), in_size)));
            } catch (const coring::timeout_error&) {
                late = true;
            }
            if (late) {
                if (at == phase::idle) co_return false;
                append_error(out, 408);
                co_await s.write_all(out);
                co_return true;
            }
            if (n == 0) co_return false; // the client closed (mid-request: it gave up)
            end = n;
        }
    }

    /// The opening handshake of a WebSocket route (RFC 6455 section 4.2.1): 101 with the accept key, or the error.
    static response ws_handshake(const request& req, const detail::ws_route& route) {
        if (req.method != "GET") // HEAD reaches GET routes too; RFC 6455 section 4.1 says GET
            return response::text("Bad Request: a WebSocket handshake is a GET\n", 400);
        // Each header may come in several lines ("Connection: keep-alive" then "Connection: Upgrade").
        auto lists = [&req](std::string_view name, std::string_view token) {
            for (std::string_view v : req.headers.get_all(name))
                if (detail::has_token(v, token)) return true;
            return false;
        };
        if (!lists("Upgrade", "websocket") || !lists("Connection", "upgrade") || req.version_minor < 1) {
            response r = response::text("Upgrade Required: this is a WebSocket endpoint\n", 426);
            r.headers.add("Upgrade", "websocket");
            return r;
        }
        const auto version = req.headers.get("Sec-WebSocket-Version");
        if (!version || *version != "13") {
            response r = response::text("Upgrade Required: WebSocket version 13 is spoken here\n", 426);
            r.headers.add("Upgrade", "websocket");
            r.headers.add("Sec-WebSocket-Version", "13");
            return r;
        }
        const std::vector<std::string_view> keys = req.headers.get_all("Sec-WebSocket-Key");
        if (keys.size() != 1 || detail::base64_decoded_size(keys.front()) != 16)
            return response::text("Bad Request: Sec-WebSocket-Key must be one 16-byte value in base64\n", 400);
        if (route.options.check_origin && !route.options.check_origin(req))
            return response::text("Forbidden: this origin may not open a WebSocket here\n", 403);
        // The first the client offers that the route speaks; tokens compare exactly (they are case-sensitive).
        std::string chosen;
        for (std::string_view offered : req.headers.get_all("Sec-WebSocket-Protocol")) {
            while (!offered.empty() && chosen.empty()) {
                const std::size_t comma = offered.find(',');
                std::string_view item = offered.substr(0, comma);
                while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
                while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
                for (const std::string& mine : route.options.subprotocols)
                    if (item == mine) chosen = mine;
                offered = comma == std::string_view::npos ? std::string_view() : offered.substr(comma + 1);
            }
            if (!chosen.empty()) break;
        }
        response r(101, "");
        r.headers.add("Upgrade", "websocket");
        r.headers.add("Connection", "Upgrade");
        r.headers.add("Sec-WebSocket-Accept", detail::ws_accept_key(keys.front()));
        if (!chosen.empty()) r.headers.add("Sec-WebSocket-Protocol", chosen);
        // permessage-deflate when the route wants it and the client offers a variant it can speak; other extensions
        // are not answered (so not agreed).
        std::optional<detail::ws_deflate_params> deflate;
        if (route.options.limits.permessage_deflate) {
            if (auto agreed = detail::ws_deflate_accept(req.headers.get_all("Sec-WebSocket-Extensions"))) {
                r.headers.add("Sec-WebSocket-Extensions", agreed->second);
                deflate = agreed->first;
            }
        }
        r.upgrade = std::make_shared<const detail::ws_upgrade>(
            detail::ws_upgrade{route.handler, route.options.limits, std::move(chosen), deflate});
        return r;
    }

    static void append_upgrade_head(std::string& out, const response& res) {
        out += "HTTP/1.1 101 Switching Protocols\r\n";
        for (const field& f : res.headers) {
            out += f.name;
            out += ": ";
            out += f.value;
            out += "\r\n";
        }
        out += "\r\n";
    }

    /// A WebSocket connection, from the 101 until the handler is done and the closing handshake over.
    template <class S>
    task<> websocket_session(S& s, request& req, const detail::ws_upgrade& up, std::string leftover) {
        // The websocket takes the stream over: a send another task still has under way when the handler returns keeps
        // it (and the websocket's state) alive until it ends; connection() then closes a moved-from stream.
        http::websocket ws(std::make_unique<detail::ws_transport_own<S>>(std::move(s)), http::websocket::role::server,
                           std::move(leftover), up.limits, up.subprotocol, up.deflate);
        websockets_.push_front(&ws);
        struct unlist {
            std::list<http::websocket*>& l;
            std::list<http::websocket*>::iterator it;
            ~unlist() { l.erase(it); }
        } listed{websockets_, websockets_.begin()};
        if (closing_) ws.start_close(close_code::going_away);
        std::exception_ptr failure;
        try {
            task<> handling = up.handler(req, ws);
            co_await std::move(handling);
        } catch (const cancelled_error&) {
        } catch (const websocket_error&) {
            // The peer broke the protocol or vanished: answered (or nothing to answer) already.
        } catch (...) {
            failure = std::current_exception();
        }
        if (failure) report(req, failure);
        task<> closing = ws.close(failure ? close_code::internal_error : close_code::normal);
        try {
            co_await shield(std::move(closing)); // bounded: close() waits at most twice close_timeout
        } catch (...) {}
    }

    /// 404, or 405 with the methods the path has.
    static response not_routed(int status, std::string_view allow) {
        response r = response::text(status == 405 ? "Method Not Allowed\n" : "Not Found\n", status);
        if (status == 405) r.headers.add("Allow", allow);
        return r;
    }

    /// A handler's response must not be able to split the message: refused (500) otherwise.
    static void check_response(const response& r) {
        for (const field& f : r.headers)
            if (!detail::is_token(f.name) || detail::unsafe_field(f.value))
                throw std::invalid_argument("coring: http: a response header has an invalid name, or CR, LF or "
                                            "NUL in its value");
        // 1xx are interim answers the server sends itself, but for a WebSocket route's own 101.
        if ((r.status < 200 && !(r.status == 101 && r.upgrade)) || r.status > 999)
            throw std::invalid_argument("coring: http: bad response status");
    }

    void report(const request& req, std::exception_ptr e) const noexcept {
        if (opts_.on_handler_error) {
            try {
                opts_.on_handler_error(req, e);
            } catch (...) {}
            return;
        }
        const char* what = "unknown exception";
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            what = ex.what();
        } catch (...) {}
        std::fprintf(stderr, "coring: http: handler for %s %s threw: %s\n", req.method.c_str(), req.target.c_str(),
                     what);
    }

    static bool body_allowed(int status) noexcept { return status >= 200 && status != 204 && status != 304; }

    /// The status line and headers; length >= 0: Content-Length, -1: chunked, -2: delimited by closing, -3: no body
    /// and no framing field (204 and 304).
    void append_head(std::string& out, const request& req, const response& res, bool keep, long long length) const {
        using namespace std::string_view_literals; // appends of known length: no strlen per piece
        // The status line, Server and Date change at most once a second for a given status: built once, copied.
        const std::time_t now = std::time(nullptr);
        if (now != prefix_time_ || res.status != prefix_status_ || req.version_minor != prefix_minor_) {
            prefix_.clear();
            prefix_ += req.version_minor == 0 ? "HTTP/1.0 "sv : "HTTP/1.1 "sv;
            detail::append_number(prefix_, static_cast<std::size_t>(res.status));
            prefix_ += ' ';
            prefix_ += reason_phrase(res.status);
            prefix_ += "\r\n"sv;
            if (!opts_.server_name.empty()) detail::append_field(prefix_, "Server"sv, opts_.server_name);
            detail::append_field(prefix_, "Date"sv, detail::http_date());
            prefix_time_ = now;
            prefix_status_ = res.status;
            prefix_minor_ = req.version_minor;
        }
        out += prefix_;
        for (const field& f : res.headers) {
            if (server_decides(f.name)) continue;
            detail::append_field(out, f.name, f.value);
        }
        if (length >= 0) {
            if (body_allowed(res.status)) {
                out += "Content-Length: "sv;
                detail::append_number(out, static_cast<std::size_t>(length));
                out += "\r\n"sv;
            }
        } else if (length == -1) {
            out += "Transfer-Encoding: chunked\r\n"sv;
        }
        if (!keep) out += "Connection: close\r\n"sv;
        else if (req.version_minor == 0) out += "Connection: keep-alive\r\n"sv;
        out += "\r\n"sv;
    }

    /// Content-Length, Transfer-Encoding, Connection and Date: the server writes these itself.
    static bool server_decides(std::string_view name) noexcept {
        switch (name.size()) {
        case 4:
            return detail::iequals(name, "Date");
        case 10:
            return detail::iequals(name, "Connection");
        case 14:
            return detail::iequals(name, "Content-Length");
        case 17:
            return detail::iequals(name, "Transfer-Encoding");
        default:
            return false;
        }
    }

    void append_error(std::string& out, int status) const {
        const std::string_view reason = reason_phrase(status);
        out += "HTTP/1.1 ";
        detail::append_number(out, static_cast<std::size_t>(status));
        out += ' ';
        out += reason;
        out += "\r\nDate: ";
        out += detail::http_date();
        out += "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ";
        detail::append_number(out, reason.size() + 1);
        out += "\r\nConnection: close\r\n\r\n";
        out += reason;
        out += '\n';
    }

    server_options opts_;
    router routes_;
    // append_head's cache of the status line, Server and Date.
    mutable std::string prefix_;
    mutable std::time_t prefix_time_ = -1;
    mutable int prefix_status_ = 0;
    mutable int prefix_minor_ = -1;
    std::list<conn> conns_;
    std::size_t live_ = 0;
    std::size_t accepted_ = 0;
    std::list<http::websocket*> websockets_; // open WebSocket connections (a shutdown sends them 1001)
    event stopped_;
    event drained_;
    address local_;
    std::chrono::milliseconds grace_{10'000};
    bool serving_ = false;
    bool closing_ = false;
#if CORING_HTTP_TLS
    std::optional<tls::context> tls_; // serve(listener, ctx): each accepted connection does the handshake first
#endif
};

} // namespace coring::http
