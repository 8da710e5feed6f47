// HTTPS: coring::http's client and server over coring::tls, against each other and against peers nobody here wrote
// (curl, CPython's http.client and http.server with ssl, aiohttp with ssl). Certificates come from the test PKI made
// at test time (support/tls_certs.hpp).

#include "support/helpers.hpp"
#include "support/http_server_fixture.hpp"
#include "support/net_helpers.hpp"
#include "support/peer_process.hpp"

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <catch2/catch.hpp>

#if CORING_HTTP_TLS // coring::http without OpenSSL: nothing to test here

#include "support/https_helpers.hpp"
#include "support/tls_certs.hpp"

#include <coring/tls.hpp>

#include <cstdlib>
#include <string>
#include <vector>

namespace test_https {

using namespace std::chrono_literals;
using coring::task;
using coring::http::client;
using coring::http::client_options;
using coring::http::client_response;
using coring::http::request;
using coring::http::response;
using coring_test::caught;
using coring_test::child_process;
using coring_test::contains;
using coring_test::failure;
using coring_test::finished;
using coring_test::get;
using coring_test::peer_server;
using coring_test::process_result;
using coring_test::start_peer;
using coring_test::tls_certs;
using coring_test::trusting_options;

namespace {

void add_routes(coring::http::server& app) {
    coring_test::add_peer_routes(app);
    app.get("/auth", [](request& r) -> task<response> {
        co_return response::text(std::string(r.headers.get_or("Authorization", "(none)")));
    });
}

/// Serves `app` over TLS on 127.0.0.1 while `body` (given the port) runs.
template <class Body>
void serve_tls_while(coring::http::server& app, Body body,
                     coring::tls::context ctx = coring_test::test_server_context()) {
    coring::run([](coring::http::server& app, Body body, coring::tls::context ctx) -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        auto serving = coring::spawn(app.serve(l, std::move(ctx)));
        std::exception_ptr failed;
        try {
            task<> running = body(l.local_address().port());
            co_await std::move(running);
        } catch (...) {
            failed = std::current_exception();
        }
        app.shutdown(1s);
        co_await serving;
        if (failed) std::rethrow_exception(failed);
    }(app, std::move(body), std::move(ctx)));
}

} // namespace

TEST_CASE("https - client and server: GET, POST, streamed body, keep-alive reuse over one TLS connection",
          "[http][https]") {
    const int fds = coring_test::open_fds();
    {
        coring::http::server app;
        add_routes(app);
        client c(trusting_options());
        serve_tls_while(app, [&c](std::uint16_t port) -> task<> {
            const std::string base = "https://127.0.0.1:" + std::to_string(port);
            client_response r = co_await get(c, base + "/hello/tls");
            CHECK(r.status == 200);
            CHECK(r.body == "{\"message\": \"Hello, tls\"}");
            CHECK(r.url.to_string() == base + "/hello/tls");
            task<client_response> posting = c.post(base + "/echo", std::string(100'000, 'p'), "text/plain");
            r = co_await std::move(posting);
            CHECK(r.status == 200);
            CHECK(r.body.size() == 100'000);
            CHECK(r.headers.get_or("X-Body-Length", "") == "100000");
            r = co_await get(c, base + "/stream");
            CHECK(r.headers.get_or("Transfer-Encoding", "") == "chunked");
            CHECK(contains(r.body, "line 0\nline 1\n"));
            CHECK(contains(r.body, "line 99\n"));
            // localhost is in the certificate too (SNI and the name check use the URL's host).
            r = co_await get(c, "https://localhost:" + std::to_string(port) + "/hello/name");
            CHECK(r.status == 200);
            CHECK(c.connections_opened() == 2); // one per origin: 127.0.0.1 and localhost
            CHECK(c.idle_connections() == 2);
            co_await c.close();
        });
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("https - the server agrees on http/1.1 over ALPN and drops a stalled handshake after header_timeout",
          "[http][https]") {
    const int fds = coring_test::open_fds();
    {
        coring::http::server_options so;
        so.header_timeout = 300ms;
        coring::http::server app(so);
        add_routes(app);
        serve_tls_while(app, [](std::uint16_t port) -> task<> {
            auto ctx = coring::tls::context::client();
            ctx.load_ca(tls_certs::get().ca);
            ctx.set_alpn({"h2", "http/1.1"});
            task<coring::tls::stream> connecting = coring::tls::stream::connect(ctx, "localhost", port);
            coring::tls::stream s = co_await std::move(connecting);
            CHECK(s.alpn() == "http/1.1");
            co_await s.write_all("GET /hello/alpn HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            std::string all;
            for (;;) {
                std::string line = co_await s.read_until("\n");
                if (line.empty()) break;
                all += line;
            }
            CHECK(all.starts_with("HTTP/1.1 200 OK\r\n"));
            CHECK(contains(all, "Hello, alpn"));
            co_await s.close();

            // A client that connects and never starts the handshake is dropped by the server.
            coring::tcp_stream raw =
                co_await coring::tcp_stream::connect(coring::address::parse("127.0.0.1:" + std::to_string(port)));
            char b[16];
            const auto started = std::chrono::steady_clock::now();
            const std::size_t n = co_await coring::timeout(5s, raw.read(std::span(b)));
            CHECK(n == 0);
            CHECK(std::chrono::steady_clock::now() - started < 3s);
            co_await raw.close();
        });
    }
    CHECK(coring_test::open_fds() == fds);
}

namespace {

task<> serve_one_tls(coring::http::server& app, coring::tcp_listener& l) {
    coring::tcp_stream raw = co_await l.accept();
    task<coring::tls::stream> accepting =
        coring::tls::stream::accept(coring_test::test_server_context(), std::move(raw));
    coring::tls::stream s = co_await std::move(accepting);
    co_await app.serve_stream(std::move(s));
}

} // namespace

TEST_CASE("https - serve_stream serves a TLS stream accepted by the caller", "[http][https]") {
    const int fds = coring_test::open_fds();
    {
        coring::http::server app;
        add_routes(app);
        client c(trusting_options());
        coring::run([](coring::http::server& app, client& c) -> task<> {
            auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
            auto serving = coring::spawn(serve_one_tls(app, l));
            const std::string base = "https://localhost:" + std::to_string(l.local_address().port());
            client_response r = co_await get(c, base + "/hello/one");
            CHECK(r.body == "{\"message\": \"Hello, one\"}");
            r = co_await get(c, base + "/stream");
            CHECK(contains(r.body, "line 99\n"));
            CHECK(c.connections_opened() == 1);
            co_await c.close(); // close_notify: the server's request loop ends
            co_await serving;
            CHECK(app.connections() == 0);
        }(app, c));
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("https - redirects from http to https follow, and credentials stay behind across the scheme change",
          "[http][https]") {
    const int fds = coring_test::open_fds();
    {
        coring::http::server secure;
        add_routes(secure);
        client_options o = trusting_options();
        o.default_headers.add("Authorization", "Bearer secret");
        client c(std::move(o));
        serve_tls_while(secure, [&c](std::uint16_t tls_port) -> task<> {
            coring::http::server plain;
            const std::string target = "https://127.0.0.1:" + std::to_string(tls_port) + "/auth";
            plain.get("/go", [target](request&) -> task<response> { co_return response::redirect(target); });
            auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
            auto serving = coring::spawn(plain.serve(l));
            const std::string from = "http://127.0.0.1:" + std::to_string(l.local_address().port()) + "/go";
            client_response r = co_await get(c, from);
            CHECK(r.status == 200);
            CHECK(r.url.to_string() == target);
            CHECK(r.body == "(none)"); // the Authorization default was for the http:// origin
            // Straight to the https:// origin, the default goes along.
            r = co_await get(c, target);
            CHECK(r.body == "Bearer secret");
            co_await c.close();
            plain.shutdown(1s);
            co_await serving;
        });
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("https - certificates that do not verify fail naming the URL and OpenSSL's reason", "[http][https]") {
    const int fds = coring_test::open_fds();
    const tls_certs& pki = tls_certs::get();
    struct bad {
        const coring_test::cert_files* files;
        const char* reason;
    };
    const bad cases[] = {{&pki.self_signed, "self-signed certificate"},
                         {&pki.expired, "certificate has expired"},
                         {&pki.wrong_host, "mismatch"}};
    for (const bad& b : cases) {
        INFO(b.reason);
        coring::http::server app;
        add_routes(app);
        client c(trusting_options());
        serve_tls_while(
            app,
            [&c, &b](std::uint16_t port) -> task<> {
                const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/hello/x";
                task<caught> t = failure(c.get(url));
                const caught e = co_await std::move(t);
                CHECK(e.kind == "tls_error");
                CHECK(contains(e.what, "coring: http: GET " + url + ": tls handshake with 127.0.0.1:"));
                CHECK(contains(e.what, "certificate verify failed"));
                CHECK(contains(e.what, b.reason));
                CHECK(c.idle_connections() == 0);
            },
            coring_test::test_server_context(*b.files));
    }
    // The system store does not know the test CA: the default client refuses a good test certificate too, and
    // insecure_skip_verification() lets it through.
    {
        coring::http::server app;
        add_routes(app);
        client strict;
        client_options o;
        o.tls = coring::tls::context::client();
        o.tls->insecure_skip_verification();
        client lax(std::move(o));
        serve_tls_while(app, [&strict, &lax](std::uint16_t port) -> task<> {
            const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/hello/x";
            task<caught> t = failure(strict.get(url));
            const caught e = co_await std::move(t);
            CHECK(e.kind == "tls_error");
            CHECK(contains(e.what, url));
            CHECK(contains(e.what, "unable to get local issuer certificate"));
            client_response r = co_await get(lax, url);
            CHECK(r.status == 200);
            co_await lax.close();
        });
    }
    CHECK(coring_test::open_fds() == fds);
}

namespace {

/// A TLS server that answers one request with `answer` and then ends the connection with close_notify
/// (`notify`) or without (the TCP stream just ends).
task<> answer_once(coring::tcp_listener& l, std::string answer, bool notify) {
    coring::tcp_stream raw = co_await l.accept();
    task<coring::tls::stream> accepting =
        coring::tls::stream::accept(coring_test::test_server_context(), std::move(raw));
    coring::tls::stream s = co_await std::move(accepting);
    std::string head = co_await s.read_until("\r\n\r\n");
    CHECK(head.starts_with("GET / HTTP/1.1\r\n"));
    co_await s.write_all(answer);
    if (notify) co_await s.close();
    else co_await s.socket().close(); // no close_notify
}

task<caught> fetch_one(std::string answer, bool notify, std::string* body) {
    auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    auto serving = coring::spawn(answer_once(l, std::move(answer), notify));
    client c(trusting_options());
    const std::string url = "https://localhost:" + std::to_string(l.local_address().port()) + "/";
    caught e;
    try {
        client_response r = co_await get(c, url);
        *body = r.body;
    } catch (const coring::tls::truncated& t) {
        e = {"truncated", t.what()};
    } catch (const std::exception& x) {
        e = {"other", x.what()};
    }
    co_await serving;
    co_return e;
}

} // namespace

TEST_CASE("https - an end without close_notify fails a body delimited by the end, not a framed one", "[http][https]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        std::string body;
        // Delimited by the end of the connection: without close_notify it could have been cut short.
        task<caught> t = fetch_one("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe whole story", false, &body);
        caught e = co_await std::move(t);
        CHECK(e.kind == "truncated");
        CHECK(contains(e.what, "coring: http: GET https://localhost:"));
        CHECK(contains(e.what, "without close_notify"));
        // The same with close_notify: complete.
        t = fetch_one("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe whole story", true, &body);
        e = co_await std::move(t);
        CHECK(e.kind.empty());
        CHECK(body == "the whole story");
        // Content-Length and chunked bodies are complete by their own framing: the missing close_notify after them
        // does not matter.
        t = fetch_one("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfive!", false, &body);
        e = co_await std::move(t);
        CHECK(e.kind.empty());
        CHECK(body == "five!");
        t = fetch_one("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false, &body);
        e = co_await std::move(t);
        CHECK(e.kind.empty());
        CHECK(body == "abc");
        // A framed body cut short is a protocol error, as over plain TCP.
        t = fetch_one("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", false, &body);
        e = co_await std::move(t);
        CHECK(e.kind == "other");
        CHECK(contains(e.what, "cut short"));
    }());
    CHECK(coring_test::open_fds() == fds);
}

// ---- peers nobody here wrote ----------------------------------------------------------------------------------------

TEST_CASE("https - server against curl --cacert: GET, POST, streamed, keep-alive reuse", "[http][https][peers]") {
    if (!coring_test::executable("/usr/bin/curl")) {
        WARN("curl is not installed: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    process_result r;
    {
        coring::http::server app;
        add_routes(app);
        serve_tls_while(app, [&r](std::uint16_t port) -> task<> {
            const std::string base = "https://localhost:" + std::to_string(port);
            const std::string ca = tls_certs::get().ca.string();
            child_process curl({"/usr/bin/curl",
                                "-sS",
                                "--max-time",
                                "10",
                                "--cacert",
                                ca,
                                "-w",
                                "|%{http_code}|%{num_connects}|%{http_version}\\n",
                                base + "/hello/curl",
                                base + "/stream",
                                "--next",
                                "-sS",
                                "--max-time",
                                "10",
                                "--cacert",
                                ca,
                                "-w",
                                "|%{http_code}|%{num_connects}\\n",
                                "-d",
                                "posted=1",
                                base + "/echo"});
            r = co_await finished(curl, 15s);
        });
    }
    INFO(r.describe());
    REQUIRE(r.succeeded());
    CHECK(contains(r.out, "{\"message\": \"Hello, curl\"}|200|1|1.1\n"));
    CHECK(contains(r.out, "line 99\n|200|0|1.1\n")); // the same TLS connection
    CHECK(contains(r.out, "posted=1|200|0\n"));
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("https - server against CPython http.client with an ssl context", "[http][https][peers]") {
    if (!coring_test::executable("/usr/bin/python3")) {
        WARN("/usr/bin/python3 is not installed: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    process_result r;
    {
        coring::http::server app;
        add_routes(app);
        serve_tls_while(app, [&r](std::uint16_t port) -> task<> {
            const std::string script = R"PY(
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), timeout=10, context=ctx)
out = []
for name in ["a", "b"]:
    c.request("GET", "/hello/" + name)
    r = c.getresponse()
    out.append(f"{r.status} {r.read().decode()}")
c.request("POST", "/echo", body=b"x" * 70000)
r = c.getresponse()
out.append(f"{r.status} {len(r.read())}")
c.request("GET", "/stream")
r = c.getresponse()
out.append(f"{r.status} {r.read().decode().count(chr(10))}")
out.append(c.sock.version())
print("|".join(out))
)PY";
            child_process py({"/usr/bin/python3", "-c", script, std::to_string(port), tls_certs::get().ca.string()});
            r = co_await finished(py, coring_test::peer_start_limit);
        });
    }
    INFO(r.describe());
    REQUIRE(r.succeeded());
    CHECK(r.out == "200 {\"message\": \"Hello, a\"}|200 {\"message\": \"Hello, b\"}|200 70000|200 100|TLSv1.3\n");
    CHECK(coring_test::open_fds() == fds);
}

namespace {

const char* const https_server_script = R"PY(
import http.server, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        body = ("hello over " + self.connection.version()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
)PY";

const char* const aiohttp_ssl_script = R"PY(
import asyncio, ssl, sys
from aiohttp import web

async def hello(request):
    return web.Response(text="hello from aiohttp over " + request.transport.get_extra_info("ssl_object").version())

async def chunks(request):
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(50):
        await resp.write(("piece %d\n" % i).encode())
    await resp.write_eof()
    return resp

async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    app = web.Application()
    app.add_routes([web.get("/hello", hello), web.get("/chunks", chunks)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
)PY";

} // namespace

TEST_CASE("https - client against CPython http.server wrapped in ssl: keep-alive over TLS", "[http][https][peers]") {
    if (!coring_test::executable("/usr/bin/python3")) {
        WARN("/usr/bin/python3 is not installed: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    {
        const tls_certs& pki = tls_certs::get();
        peer_server srv =
            start_peer({"/usr/bin/python3", "-c", https_server_script, pki.leaf.cert.string(), pki.leaf.key.string()});
        client c(trusting_options());
        coring::run([](client& c, std::uint16_t port) -> task<> {
            const std::string url = "https://localhost:" + std::to_string(port) + "/x";
            for (int i = 0; i < 3; ++i) {
                client_response r = co_await get(c, url);
                CHECK(r.status == 200);
                CHECK(r.body == "hello over TLSv1.3");
            }
            CHECK(c.connections_opened() == 1);
            co_await c.close();
        }(c, srv.port));
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("https - client against aiohttp with ssl: GET, chunked, keep-alive", "[http][https][peers]") {
    if (!coring_test::executable("/usr/bin/python3") ||
        std::system("/usr/bin/python3 -c 'import aiohttp' >/dev/null 2>&1") != 0) {
        WARN("python3-aiohttp is not installed: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    {
        const tls_certs& pki = tls_certs::get();
        peer_server srv =
            start_peer({"/usr/bin/python3", "-c", aiohttp_ssl_script, pki.leaf.cert.string(), pki.leaf.key.string()});
        client c(trusting_options());
        coring::run([](client& c, std::uint16_t port) -> task<> {
            const std::string base = "https://127.0.0.1:" + std::to_string(port);
            client_response r = co_await get(c, base + "/hello");
            CHECK(r.status == 200);
            CHECK(r.body == "hello from aiohttp over TLSv1.3");
            CHECK(contains(r.headers.get_or("Server", ""), "aiohttp"));
            r = co_await get(c, base + "/chunks");
            CHECK(r.status == 200);
            CHECK(contains(r.body, "piece 0\npiece 1\n"));
            CHECK(contains(r.body, "piece 49\n"));
            r = co_await get(c, base + "/hello");
            CHECK(r.status == 200);
            CHECK(c.connections_opened() == 1);
            co_await c.close();
        }(c, srv.port));
    }
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_https

#endif // CORING_HTTP_TLS
