// coring::http::server: routing, bodies, chunked both ways, keep-alive, pipelining, 100-continue, limits, timeouts,
// hostile inputs (request smuggling vectors), handler errors and graceful shutdown, from a raw client that sends
// exact bytes.

#include "support/helpers.hpp"
#include "support/http_server_fixture.hpp"
#include "support/http_vectors.hpp"

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace test_server {

using namespace std::chrono_literals;
using coring::task;
using coring::http::request;
using coring::http::response;
using coring_test::raw_client;
using coring_test::raw_response;

namespace {

/// The routes every test serves.
void add_routes(coring::http::server& app) {
    app.get("/", [](request&) -> task<response> { co_return response::text("Hello, World!"); });
    app.get("/hello/{name}",
            [](request& r) -> task<response> { co_return response::json("{\"hello\": \"" + r.param("name") + "\"}"); });
    app.get("/users/{id}/posts/{post}",
            [](request& r) -> task<response> { co_return response::text(r.param("id") + "/" + r.param("post")); });
    app.get("/query", [](request& r) -> task<response> {
        co_return response::text(r.query_param("q").value_or("(none)") + "|" + r.query_param("n").value_or("(none)"));
    });
    app.post("/echo", [](request& r) -> task<response> {
        response res = response::text(r.body);
        res.headers.add("X-Method", r.method);
        co_return res;
    });
    app.put("/echo", [](request& r) -> task<response> { co_return response::text("put:" + r.body); });
    app.get("/target", [](request& r) -> task<response> { co_return response::text(r.target); });
    app.get("/stream", [](request& r) -> task<response> {
        const int n = std::stoi(r.query_param("n").value_or("3"));
        co_return response::streamed(
            [n](coring::http::body_writer& w) -> task<> {
                for (int i = 0; i < n; ++i) co_await w.write("chunk " + std::to_string(i) + "\n");
            },
            "text/plain");
    });
    app.get("/slow", [](request&) -> task<response> {
        co_await coring::sleep(300ms);
        co_return response::text("slow done");
    });
    app.get("/nocontent", [](request&) -> task<response> { co_return response(204, ""); });
    // Streamed responses whose status allows no body: the producer must not run, and nothing may frame a body.
    for (const int status : {204, 304}) {
        app.get("/streamed/" + std::to_string(status), [status](request&) -> task<response> {
            response r = response::streamed(
                [](coring::http::body_writer& w) -> task<> { co_await w.write("must never be sent"); }, "text/plain");
            r.status = status;
            co_return r;
        });
    }
    // What the handler sees of the fields: headers and trailers, one per line.
    app.post("/fields", [](request& r) -> task<response> {
        std::string out;
        for (const auto& f : r.headers) out += "H " + f.name + ": " + f.value + "\n";
        for (const auto& f : r.trailers) out += "T " + f.name + ": " + f.value + "\n";
        co_return response::text(out + "B " + r.body);
    });
    app.get("/throw", [](request&) -> task<response> {
        throw std::runtime_error("handler failed");
        co_return response::text("never");
    });
    app.get("/bad-header", [](request&) -> task<response> {
        response r = response::text("x");
        r.headers.add("X-Evil", "a\r\nSet-Cookie: injected=1");
        co_return r;
    });
    app.get("/close", [](request&) -> task<response> {
        response r = response::text("bye");
        r.headers.add("Connection", "close");
        co_return r;
    });
}

/// Runs `body(app, address)` against a fresh server; shuts the server down afterwards and checks that every
/// descriptor is back.
template <class Body>
void with_server(Body body, coring::http::server_options opts = {}) {
    const int fds = coring_test::open_fds();
    {
        coring::http::server app(std::move(opts));
        add_routes(app);
        coring::run([](coring::http::server& app, Body& body) -> task<> {
            auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
            const coring::address at = l.local_address();
            auto serving = coring::spawn(app.serve(l));
            std::exception_ptr failed;
            try {
                co_await body(app, at);
            } catch (...) {
                failed = std::current_exception();
            }
            app.shutdown(1s);
            co_await serving;
            if (failed) std::rethrow_exception(failed);
        }(app, body));
    }
    CHECK(coring_test::open_fds() == fds);
}

task<raw_response> one(const coring::address& at, std::string req, bool head = false) {
    raw_client c = co_await raw_client::connect(at);
    co_await c.send(std::move(req));
    raw_response r = co_await c.next(5s, head);
    co_return r;
}

TEST_CASE("http server - routing: literal paths, parameters, percent-decoding, query, 404, 405 with Allow",
          "[http][server]") {
    with_server([](coring::http::server&, coring::address at) -> task<> {
        raw_response r = co_await one(at, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(r.status == 200);
        CHECK(r.body == "Hello, World!");
        CHECK(r.headers.get_or("Content-Type", "") == "text/plain; charset=utf-8");
        CHECK(r.headers.get_or("Content-Length", "") == "13");
        CHECK(r.headers.contains("Date"));
        CHECK(r.headers.get_or("Server", "") == "coring");

        r = co_await one(at, "GET /hello/W%C3%B6rld%20x HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(r.body == "{\"hello\": \"W\xC3\xB6rld x\"}");
        CHECK(r.headers.get_or("content-type", "") == "application/json");
        r = co_await one(at, "GET /users/7/posts/42 HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(r.body == "7/42");
        r = co_await one(at, "GET /query?q=a+b%26c&n=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(r.body == "a b&c|1");
        r = co_await one(at, "GET /query HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(r.body == "(none)|(none)");

        r = co_await one(at, "GET /users/7/posts HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(r.status == 404);
        r = co_await one(at, "GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(r.status == 404); // an empty segment is not a parameter
        r = co_await one(at, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(r.status == 404);
        r = co_await one(at, "DELETE /echo HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(r.status == 405);
        CHECK(r.headers.get_or("Allow", "") == "POST, PUT");

        // HEAD is served by the GET route: same headers, no body.
        r = co_await one(at, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", true);
        CHECK(r.status == 200);
        CHECK(r.headers.get_or("Content-Length", "") == "13");
        CHECK(r.body.empty());
    });
}

TEST_CASE("http server - request bodies with Content-Length and chunked (extensions, trailers), empty bodies",
          "[http][server]") {
    with_server([](coring::http::server&, coring::address at) -> task<> {
        raw_response r = co_await one(at, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world");
        CHECK(r.status == 200);
        CHECK(r.body == "hello world");
        CHECK(r.headers.get_or("X-Method", "") == "POST");
        r = co_await one(at, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n");
        CHECK(r.body == "hello world");
        r = co_await one(at, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        CHECK(r.status == 200);
        CHECK(r.body.empty());
        r = co_await one(at, "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        CHECK(r.body == "put:abc");

        // A body that arrives in many small pieces.
        raw_client c = co_await raw_client::connect(at);
        const std::string body(100000, 'b');
        co_await c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
        for (std::size_t i = 0; i < body.size(); i += 7000) {
            co_await c.send(body.substr(i, 7000));
            co_await coring::sleep(1ms);
        }
        r = co_await c.next();
        CHECK(r.body == body);
    });
}

TEST_CASE("http server - responses: streamed chunked, HTTP/1.0 streamed until close, 204 without length",
          "[http][server]") {
    with_server([](coring::http::server&, coring::address at) -> task<> {
        raw_response r = co_await one(at, "GET /stream?n=4 HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(r.status == 200);
        CHECK(r.headers.get_or("Transfer-Encoding", "") == "chunked");
        CHECK_FALSE(r.headers.contains("Content-Length"));
        CHECK(r.body == "chunk 0\nchunk 1\nchunk 2\nchunk 3\n");
        CHECK(r.keep_alive);

        raw_client c = co_await raw_client::connect(at);
        co_await c.send("GET /stream?n=2 HTTP/1.0\r\n\r\n");
        const std::string all = co_await c.read_all();
        CHECK(all.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
        CHECK(all.find("Transfer-Encoding") == std::string::npos);
        CHECK(all.find("Connection: close") != std::string::npos);
        CHECK(all.substr(all.size() - 16) == "chunk 0\nchunk 1\n");

        r = co_await one(at, "GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(r.status == 204);
        CHECK_FALSE(r.headers.contains("Content-Length"));
    });
}

TEST_CASE("http server - keep-alive: many requests on one connection, HTTP/1.0 and Connection close end it",
          "[http][server]") {
    with_server([](coring::http::server& app, coring::address at) -> task<> {
        raw_client c = co_await raw_client::connect(at);
        for (int i = 0; i < 20; ++i) {
            co_await c.send("GET /target?i=" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n");
            const raw_response r = co_await c.next();
            CHECK(r.body == "/target?i=" + std::to_string(i));
            CHECK(r.keep_alive);
        }
        CHECK(app.connections() == 1);

        // HTTP/1.0 closes unless asked to keep alive.
        raw_client d = co_await raw_client::connect(at);
        co_await d.send("GET / HTTP/1.0\r\n\r\n");
        raw_response r = co_await d.next();
        CHECK(r.status == 200);
        const bool d_closed = co_await d.closed();
        CHECK(d_closed);
        raw_client e = co_await raw_client::connect(at);
        co_await e.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        r = co_await e.next();
        CHECK(r.headers.get_or("Connection", "") == "keep-alive");
        co_await e.send("GET /target HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        r = co_await e.next();
        CHECK(r.body == "/target");

        // The client's Connection: close, and a handler's.
        raw_client f = co_await raw_client::connect(at);
        co_await f.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        r = co_await f.next();
        CHECK(r.headers.get_or("Connection", "") == "close");
        const bool f_closed = co_await f.closed();
        CHECK(f_closed);
        raw_client g = co_await raw_client::connect(at);
        co_await g.send("GET /close HTTP/1.1\r\nHost: x\r\n\r\n");
        r = co_await g.next();
        CHECK(r.body == "bye");
        const bool g_closed = co_await g.closed();
        CHECK(g_closed);
    });
}

TEST_CASE("http server - pipelining: requests sent together are answered in order", "[http][server]") {
    with_server([](coring::http::server&, coring::address at) -> task<> {
        raw_client c = co_await raw_client::connect(at);
        std::string batch;
        for (int i = 0; i < 50; ++i) {
            if (i % 10 == 3)
                batch += "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nb" + std::to_string(i % 10) + "!!";
            else batch += "GET /target?i=" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
        }
        co_await c.send(batch);
        for (int i = 0; i < 50; ++i) {
            const raw_response r = co_await c.next();
            if (i % 10 == 3) CHECK(r.body == "b3!!");
            else CHECK(r.body == "/target?i=" + std::to_string(i));
        }
        // A request split at every possible byte still parses.
        const std::string req = "GET /target?split HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n";
        for (std::size_t cut = 1; cut < req.size(); cut += 5) {
            co_await c.send(req.substr(0, cut));
            co_await coring::sleep(1ms);
            co_await c.send(req.substr(cut));
            const raw_response r = co_await c.next();
            CHECK(r.body == "/target?split");
        }
    });
}

TEST_CASE("http server - Expect 100-continue: the interim response comes before the body is sent, refused when too "
          "large",
          "[http][server]") {
    coring::http::server_options opts;
    opts.max_body = 1000;
    with_server(
        [](coring::http::server&, coring::address at) -> task<> {
            raw_client c = co_await raw_client::connect(at);
            co_await c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
            raw_response r = co_await c.next();
            CHECK(r.status == 100);
            co_await c.send("12345");
            r = co_await c.next();
            CHECK(r.status == 200);
            CHECK(r.body == "12345");

            raw_client d = co_await raw_client::connect(at);
            co_await d.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
            r = co_await d.next();
            CHECK(r.status == 413);
            const bool closed = co_await d.closed();
            CHECK(closed);
        },
        opts);
}

TEST_CASE("http server - limits: 414 target, 431 header count and size, 413 body (sized and chunked), then close",
          "[http][server]") {
    coring::http::server_options opts;
    opts.max_target = 100;
    opts.max_headers = 10;
    opts.max_header_bytes = 2000;
    opts.max_body = 1000;
    with_server(
        [](coring::http::server&, coring::address at) -> task<> {
            struct probe {
                std::string request;
                int status;
            };
            std::vector<probe> probes;
            probes.push_back({"GET /" + std::string(200, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414});
            std::string many = "GET / HTTP/1.1\r\nHost: x\r\n";
            for (int i = 0; i < 20; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
            probes.push_back({many + "\r\n", 431});
            probes.push_back({"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(3000, 'v') + "\r\n\r\n", 431});
            probes.push_back({"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", 413});
            std::string chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
            for (int i = 0; i < 20; ++i) chunked += "64\r\n" + std::string(100, 'c') + "\r\n";
            probes.push_back({chunked + "0\r\n\r\n", 413});
            for (const auto& p : probes) {
                INFO(p.request.substr(0, 60));
                raw_client c = co_await raw_client::connect(at);
                co_await c.send(p.request);
                const raw_response r = co_await c.next();
                CHECK(r.status == p.status);
                CHECK(r.headers.get_or("Connection", "") == "close");
                const bool closed = co_await c.closed();
                CHECK(closed);
            }
            // Just inside every limit is fine.
            const raw_response ok = co_await one(at, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" +
                                                         std::string(1000, 'k'));
            CHECK(ok.status == 200);
            CHECK(ok.body.size() == 1000);
        },
        opts);
}

TEST_CASE("http server - hostile requests: smuggling vectors, obs-fold, bare LF, bad chunk sizes are 400 and close",
          "[http][server]") {
    with_server([](coring::http::server&, coring::address at) -> task<> {
        for (const auto& v : coring_test::refused_requests()) {
            INFO("request: " << v.what);
            raw_client c = co_await raw_client::connect(at);
            co_await c.send(v.bytes);
            const raw_response r = co_await c.next();
            CHECK(r.status == v.status);
            // Refused, then closed: nothing that followed is ever served as a second request.
            const bool closed = co_await c.closed();
            CHECK(closed);
        }
        for (const auto& v : coring_test::accepted_requests()) {
            INFO("request: " << v.what);
            raw_client c = co_await raw_client::connect(at);
            co_await c.send(v.bytes);
            const raw_response r = co_await c.next();
            CHECK(r.status == v.status);
        }
        // obs-fold whose continuation arrives in a later read.
        {
            raw_client c = co_await raw_client::connect(at);
            co_await c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n");
            co_await coring::sleep(5ms);
            co_await c.send("  b\r\n\r\n");
            const raw_response r = co_await c.next();
            CHECK(r.status == 400);
        }
        // HTTP/2 and HTTP/0.9-style requests are not served either.
        raw_client c = co_await raw_client::connect(at);
        co_await c.send("GET / HTTP/2.0\r\nHost: x\r\n\r\n");
        const raw_response r = co_await c.next();
        CHECK(r.status >= 400);
    });
}

TEST_CASE("http server - request smuggling through a CR LF CR X header end gets one 400, never a second response",
          "[http][server]") {
    with_server([](coring::http::server&, coring::address at) -> task<> {
        raw_client c = co_await raw_client::connect(at);
        co_await c.send("GET / HTTP/1.1\r\nHost: a\r\n\rXGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
        const std::string all = co_await c.read_all();
        CHECK(all.rfind("HTTP/1.1 400 ", 0) == 0);
        CHECK(all.find("HTTP/1.1", 1) == std::string::npos); // one response only
    });
}

TEST_CASE("http server - chunked trailers reach the handler apart from the headers, a later request has none",
          "[http][server]") {
    with_server([](coring::http::server&, coring::address at) -> task<> {
        raw_client c = co_await raw_client::connect(at);
        co_await c.send("POST /fields HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                        "0\r\nX-Admin: yes\r\nContent-Length: 5\r\n\r\n"
                        "POST /fields HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok");
        raw_response r = co_await c.next();
        CHECK(r.status == 200);
        CHECK(r.body == "H Host: a\nH Transfer-Encoding: chunked\nT X-Admin: yes\nT Content-Length: 5\nB abc");
        r = co_await c.next();
        CHECK(r.body == "H Host: a\nH Content-Length: 2\nB ok");
    });
}

TEST_CASE("http server - streamed 204, 304 and HEAD responses carry no body: keep-alive clients stay in step",
          "[http][server]") {
    with_server([](coring::http::server&, coring::address at) -> task<> {
        for (const char* path : {"/streamed/204", "/streamed/304"}) {
            INFO(path);
            raw_client c = co_await raw_client::connect(at);
            co_await c.send(std::string("GET ") + path +
                            " HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
            raw_response r = co_await c.next();
            CHECK((r.status == 204 || r.status == 304));
            CHECK_FALSE(r.headers.contains("Transfer-Encoding"));
            CHECK_FALSE(r.headers.contains("Content-Length"));
            CHECK(r.keep_alive);
            // Read as a client that does not know 204/304 have no body would: nothing may follow but the next
            // response.
            r = co_await c.next();
            CHECK(r.status == 200);
            CHECK(r.body == "Hello, World!");
        }
        for (const char* version : {"1.1", "1.0"}) {
            INFO("HTTP/" << version);
            raw_client c = co_await raw_client::connect(at);
            co_await c.send(std::string("GET /streamed/204 HTTP/") + version +
                            "\r\nHost: a\r\nConnection: close\r\n\r\n");
            const std::string all = co_await c.read_all();
            CHECK(all.find(" 204 No Content\r\n") != std::string::npos);
            CHECK(all.find("must never be sent") == std::string::npos);
            CHECK(all.find("Transfer-Encoding") == std::string::npos);
        }
        raw_client c = co_await raw_client::connect(at);
        co_await c.send("HEAD /stream?n=2 HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        raw_response r = co_await c.next(5s, true);
        CHECK(r.status == 200);
        CHECK(r.body.empty());
        r = co_await c.next();
        CHECK(r.body == "Hello, World!");
    });
}

TEST_CASE("http server - a slowloris client gets 408 at the header deadline while others are served",
          "[http][server]") {
    coring::http::server_options opts;
    opts.header_timeout = 300ms;
    opts.body_timeout = 300ms;
    opts.idle_timeout = 400ms;
    with_server(
        [](coring::http::server&, coring::address at) -> task<> {
            // One byte every 40 ms never completes the headers in time, however long it keeps going.
            auto slow = coring::spawn([](coring::address at) -> task<int> {
                raw_client c = co_await raw_client::connect(at);
                const std::string req = "GET / HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(200, 'p');
                coring_test::stopwatch sw;
                for (char ch : req) {
                    try {
                        co_await c.send(std::string(1, ch));
                    } catch (const std::system_error&) {
                        break; // the server closed on us
                    }
                    co_await coring::sleep(40ms);
                    if (sw.seconds() > 1.0) break;
                }
                const raw_response r = co_await c.next(3s);
                co_return r.status;
            }(at));
            // Meanwhile the server answers others at once.
            for (int i = 0; i < 5; ++i) {
                const raw_response r = co_await one(at, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
                CHECK(r.status == 200);
                co_await coring::sleep(30ms);
            }
            const int status = co_await slow;
            CHECK(status == 408);

            // A body that stops half-way: 408 at the body deadline.
            raw_client b = co_await raw_client::connect(at);
            co_await b.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
            const raw_response rb = co_await b.next(3s);
            CHECK(rb.status == 408);

            // An idle keep-alive connection is closed at the idle deadline, without a response.
            raw_client k = co_await raw_client::connect(at);
            co_await k.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            const raw_response rk = co_await k.next();
            CHECK(rk.status == 200);
            coring_test::stopwatch idle;
            const bool closed = co_await k.closed(3s);
            CHECK(closed);
            CHECK(idle.seconds() >= 0.3);
        },
        opts);
}

TEST_CASE("http server - a handler that throws gives 500 and the error handler, unsafe headers are refused",
          "[http][server]") {
    struct seen_t {
        int count = 0;
        std::string what;
    };
    static seen_t seen;
    seen = {};
    coring::http::server_options opts;
    opts.on_handler_error = [](const request& r, std::exception_ptr e) {
        ++seen.count;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            seen.what = r.target + ": " + ex.what();
        }
    };
    with_server(
        [](coring::http::server&, coring::address at) -> task<> {
            raw_client c = co_await raw_client::connect(at);
            co_await c.send("GET /throw HTTP/1.1\r\nHost: x\r\n\r\n");
            raw_response r = co_await c.next();
            CHECK(r.status == 500);
            // The connection stays usable.
            co_await c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            r = co_await c.next();
            CHECK(r.status == 200);
            // A header with CR LF in it would split the response: refused as a handler error.
            co_await c.send("GET /bad-header HTTP/1.1\r\nHost: x\r\n\r\n");
            r = co_await c.next();
            CHECK(r.status == 500);
            CHECK_FALSE(r.headers.contains("Set-Cookie"));
        },
        opts);
    CHECK(seen.count == 2);
    CHECK(seen.what.find("/bad-header") != std::string::npos);
}

TEST_CASE("http server - graceful shutdown: in-flight requests finish with Connection close, idle ones close, "
          "serve returns",
          "[http][server]") {
    const int fds = coring_test::open_fds();
    {
        coring::http::server app;
        add_routes(app);
        coring::run([](coring::http::server& app) -> task<> {
            auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
            const coring::address at = l.local_address();
            auto serving = coring::spawn(app.serve(l));

            raw_client idle = co_await raw_client::connect(at);
            co_await idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            raw_response r = co_await idle.next();
            CHECK(r.status == 200);

            raw_client busy = co_await raw_client::connect(at);
            co_await busy.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
            co_await coring::sleep(50ms); // the slow handler is running
            CHECK(app.connections() == 2);
            coring_test::stopwatch sw;
            app.shutdown(5s);

            const bool idle_closed = co_await idle.closed(2s);
            CHECK(idle_closed);
            r = co_await busy.next();
            CHECK(r.status == 200);
            CHECK(r.body == "slow done");
            CHECK(r.headers.get_or("Connection", "") == "close");
            co_await serving;
            CHECK(sw.seconds() < 2.0);
            CHECK(app.connections() == 0);
            // No longer listening... once the listener is gone.
            l.close();
            CHECK_THROWS_AS(co_await coring::tcp_stream::connect(at), std::system_error);
        }(app));
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("http server - shutdown cancels a handler that outlives the grace period", "[http][server]") {
    coring::http::server app;
    app.get("/forever", [](request&) -> task<response> {
        co_await coring::sleep(1h);
        co_return response::text("never");
    });
    coring::run([](coring::http::server& app) -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        const coring::address at = l.local_address();
        auto serving = coring::spawn(app.serve(l));
        raw_client c = co_await raw_client::connect(at);
        co_await c.send("GET /forever HTTP/1.1\r\nHost: x\r\n\r\n");
        co_await coring::sleep(30ms);
        coring_test::stopwatch sw;
        app.shutdown(100ms);
        co_await serving;
        CHECK(sw.seconds() < 2.0);
        const bool closed = co_await c.closed();
        CHECK(closed);
    }(app));
}

TEST_CASE("http server - a shutdown requested before serve begins makes serve return at once", "[http][server]") {
    coring::http::server app;
    add_routes(app);
    coring::run([](coring::http::server& app) -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        app.shutdown(); // e.g. a signal that arrived during start-up
        coring_test::stopwatch sw;
        task<> serving = app.serve(l);
        co_await coring::timeout(5s, serving);
        CHECK(sw.seconds() < 1.0);
        CHECK(app.connections() == 0);
    }(app));
}

TEST_CASE("http server - many clients at once, each with several keep-alive requests", "[http][server]") {
    with_server([](coring::http::server&, coring::address at) -> task<> {
        std::vector<task<int>> clients;
        for (int i = 0; i < 100; ++i)
            clients.push_back([](coring::address at, int i) -> task<int> {
                raw_client c = co_await raw_client::connect(at);
                int ok = 0;
                for (int k = 0; k < 5; ++k) {
                    const std::string t = "/target?c=" + std::to_string(i) + "&k=" + std::to_string(k);
                    co_await c.send("GET " + t + " HTTP/1.1\r\nHost: x\r\n\r\n");
                    const raw_response r = co_await c.next();
                    if (r.body == t) ++ok;
                }
                co_return ok;
            }(at, i));
        const std::vector<int> oks = co_await coring::gather(std::move(clients));
        int total = 0;
        for (int v : oks) total += v;
        CHECK(total == 500);
    });
}

} // namespace

TEST_CASE("http server - one connection alternating statuses, versions and header sets: every response exact",
          "[http][server]") {
    // The server reuses a cached status line with Date per status and version, and responses reuse header storage:
    // nothing may carry over from one response to the next.
    with_server([](coring::http::server&, coring::address at) -> task<> {
        raw_client c = co_await raw_client::connect(at);
        for (int round = 0; round < 3; ++round) {
            co_await c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
            raw_response r = co_await c.next();
            CHECK(r.status == 200);
            CHECK(r.headers.get_or("X-Method", "") == "POST");
            CHECK(r.headers.size() == 5); // Server, Date, Content-Type, X-Method, Content-Length

            co_await c.send("GET /hello/ada HTTP/1.1\r\nHost: x\r\n\r\n");
            r = co_await c.next();
            CHECK(r.status == 200);
            CHECK(r.body == "{\"hello\": \"ada\"}");
            CHECK(r.headers.get_or("Content-Type", "") == "application/json");
            CHECK_FALSE(r.headers.contains("X-Method"));
            CHECK(r.headers.size() == 4);

            co_await c.send("GET /missing HTTP/1.1\r\nHost: x\r\n\r\n");
            r = co_await c.next();
            CHECK(r.status == 404);

            co_await c.send("GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n");
            r = co_await c.next();
            CHECK(r.status == 204);
            CHECK_FALSE(r.headers.contains("Content-Length"));
        }
        // The status line follows the request's version, on a connection that keeps alive either way.
        raw_client d = co_await raw_client::connect(at);
        for (int i = 0; i < 2; ++i) {
            co_await d.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            raw_response r = co_await d.next();
            CHECK(r.status == 200);
            CHECK(r.version_minor == 0);
            co_await d.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            r = co_await d.next();
            CHECK(r.status == 200);
            CHECK(r.version_minor == 1);
        }
    });
}

} // namespace test_server
