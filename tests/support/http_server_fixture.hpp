#pragma once

// A coring HTTP server on 127.0.0.1:0 inside a test's loop, and a raw client that sends exact bytes and parses the
// responses with llhttp (through coring's own response parser), so that tests can send what no well-behaved client
// would.

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace coring_test {

/// Serves `app` on 127.0.0.1:0 in a loop of its own while `client(port)` (a coroutine) runs, then shuts it down;
/// returns what the client returned.
template <class Client, class R = typename std::invoke_result_t<Client&, std::uint16_t>::value_type>
R serve_while(coring::http::server& app, Client client) {
    return coring::run([](coring::http::server& app, Client client) -> coring::task<R> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        auto serving = coring::spawn(app.serve(l));
        coring::task<R> running = client(l.local_address().port());
        R r = co_await std::move(running);
        app.shutdown(std::chrono::seconds(1));
        co_await serving;
        co_return r;
    }(app, client));
}

/// One parsed response.
struct raw_response {
    int status = 0;
    int version_minor = -1; ///< HTTP/1.<version_minor> of the status line
    coring::http::headers headers;
    std::string body;
    bool keep_alive = false;
};

/// A raw HTTP client connection: sends bytes as given, reads responses one by one.
class raw_client {
public:
    explicit raw_client(coring::tcp_stream s) : s_(std::move(s)), st_(std::make_unique<state>()) {}

    static coring::task<raw_client> connect(const coring::address& at) {
        coring::tcp_stream s = co_await coring::tcp_stream::connect(at);
        co_return raw_client(std::move(s));
    }

    coring::task<> send(std::string bytes) { co_await s_.write_all(bytes); }

    /// The next response (after any bytes already buffered); status 0 when the server closed first. A read that
    /// takes longer than `limit` fails the test (never hangs it).
    coring::task<raw_response> next(std::chrono::milliseconds limit = std::chrono::seconds(5), bool head = false) {
        st_->parser.expect_no_body(head);
        raw_response r;
        for (;;) {
            if (begin_ < buf_.size()) {
                const auto res = st_->parser.feed(buf_.data() + begin_, buf_.size() - begin_);
                begin_ += res.consumed;
                if (res.state == coring::http::detail::parse_state::error) {
                    FAIL("unparsable response: " << st_->parser.error_reason());
                }
                if (res.state == coring::http::detail::parse_state::message_done) {
                    r.status = st_->parser.status_code();
                    r.version_minor = st_->parser.version_minor();
                    r.headers = st_->headers;
                    r.body = st_->body;
                    r.keep_alive = st_->parser.keep_alive();
                    st_->parser.next();
                    co_return r;
                }
            }
            buf_.clear();
            begin_ = 0;
            char chunk[16384];
            const std::size_t n = co_await coring::timeout(limit, s_.read(std::span(chunk)));
            if (n == 0) {
                if (st_->parser.finish() == coring::http::detail::parse_state::message_done) {
                    r.status = st_->parser.status_code();
                    r.headers = st_->headers;
                    r.body = st_->body;
                    co_return r;
                }
                co_return r; // closed before a response
            }
            buf_.assign(chunk, n);
        }
    }

    /// Whether the server closed the connection (reads the end within `limit`, skipping nothing: any byte fails).
    coring::task<bool> closed(std::chrono::milliseconds limit = std::chrono::seconds(5)) {
        if (begin_ < buf_.size()) co_return false;
        char c[256];
        std::size_t n = 0;
        try {
            n = co_await coring::timeout(limit, s_.read(std::span(c)));
        } catch (const std::system_error&) {
            co_return true; // reset
        }
        co_return n == 0;
    }

    /// Bytes the server sent until it closed (for answers checked as text).
    coring::task<std::string> read_all(std::chrono::milliseconds limit = std::chrono::seconds(5)) {
        std::string out = buf_.substr(begin_);
        buf_.clear();
        begin_ = 0;
        char chunk[16384];
        for (;;) {
            std::size_t n = 0;
            try {
                n = co_await coring::timeout(limit, s_.read(std::span(chunk)));
            } catch (const std::system_error&) {
                break;
            }
            if (n == 0) break;
            out.append(chunk, n);
        }
        co_return out;
    }

    coring::tcp_stream& stream() noexcept { return s_; }

private:
    static coring::http::detail::parse_limits limits() {
        coring::http::detail::parse_limits l;
        l.max_body = 256 << 20;
        return l;
    }
    // The parser keeps pointers to the sinks: they stay put when the client moves.
    struct state {
        coring::http::headers headers;
        std::string body;
        coring::http::detail::message_parser parser{headers, body, limits()};
    };
    coring::tcp_stream s_;
    std::unique_ptr<state> st_;
    std::string buf_;
    std::size_t begin_ = 0;
};

/// The routes the tests against clients nobody here wrote (curl, CPython) serve: GET /hello/{name} (a JSON greeting),
/// POST /echo (the body back, its length in X-Body-Length), GET /stream (100 lines, streamed).
inline void add_peer_routes(coring::http::server& app) {
    using coring::http::request;
    using coring::http::response;
    app.get("/hello/{name}", [](request& r) -> coring::task<response> {
        co_return response::json("{\"message\": \"Hello, " + r.param("name") + "\"}");
    });
    app.post("/echo", [](request& r) -> coring::task<response> {
        response res = response::text(r.body);
        res.headers.add("X-Body-Length", std::to_string(r.body.size()));
        co_return res;
    });
    app.get("/stream", [](request&) -> coring::task<response> {
        co_return response::streamed(
            [](coring::http::body_writer& w) -> coring::task<> {
                for (int i = 0; i < 100; ++i) co_await w.write("line " + std::to_string(i) + "\n");
            },
            "text/plain");
    });
}

} // namespace coring_test
