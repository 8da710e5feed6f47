// coring::http::server against clients nobody here wrote: curl and CPython's http.client.

#include "support/helpers.hpp"
#include "support/http_server_fixture.hpp"
#include "support/net_helpers.hpp"
#include "support/peer_process.hpp"

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace test_server_peers {

using namespace std::chrono_literals;
using coring::task;
using coring::http::request;
using coring::http::response;
using coring_test::child_process;
using coring_test::finished;
using coring_test::process_result;

namespace {

void add_routes(coring::http::server& app) {
    coring_test::add_peer_routes(app);
    app.get("/peer", [](request& r) -> task<response> {
        co_return response::text(std::string(r.headers.get_or("User-Agent", "?")));
    });
}

/// Serves the peer routes while `client` (a task running a peer process) runs; returns its result.
template <class Client>
process_result serve_while(Client client) {
    coring::http::server app;
    add_routes(app);
    return coring_test::serve_while(app, std::move(client));
}

TEST_CASE("http server peers - curl: GET with a path parameter, POST, chunked upload, HEAD, keep-alive reuse",
          "[http][server][peers]") {
    if (!coring_test::executable("/usr/bin/curl")) {
        WARN("curl is not installed: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    const process_result r = serve_while([](std::uint16_t port) -> task<process_result> {
        const std::string base = "http://127.0.0.1:" + std::to_string(port);
        // Several URLs in one curl run share one connection; -w prints what curl saw for each.
        child_process curl({"/usr/bin/curl", "-sS", "--max-time", "10", "-w", "|%{http_code}|%{num_connects}\\n",
                            base + "/hello/W%C3%B6rld", base + "/hello/again", base + "/stream", "--next", "-sS",
                            "--max-time", "10", "-w", "|%{http_code}|%{num_connects}\\n", "-d", "posted=1&x=2",
                            base + "/echo"});
        process_result res = co_await finished(curl, 15s);
        co_return res;
    });
    INFO(r.describe());
    REQUIRE(r.succeeded());
    CHECK(r.out.find("{\"message\": \"Hello, W\xC3\xB6rld\"}|200|1\n") != std::string::npos);
    CHECK(r.out.find("{\"message\": \"Hello, again\"}|200|0\n") != std::string::npos); // the same connection
    CHECK(r.out.find("line 0\nline 1\n") != std::string::npos);
    CHECK(r.out.find("line 99\n|200|0\n") != std::string::npos);
    CHECK(r.out.find("posted=1&x=2|200|0\n") != std::string::npos);

    // A chunked upload (curl -T - with no length) and a HEAD request.
    const process_result up = serve_while([](std::uint16_t port) -> task<process_result> {
        const std::string base = "http://127.0.0.1:" + std::to_string(port);
        child_process curl({"/bin/sh", "-c",
                            "head -c 300000 /dev/zero | tr '\\0' z | /usr/bin/curl -sS --max-time 10 -H "
                            "'Transfer-Encoding: chunked' -X POST --data-binary @- -D - " +
                                base + "/echo -o /dev/null && /usr/bin/curl -sS -I --max-time 10 " + base +
                                "/hello/head"});
        process_result res = co_await finished(curl, 15s);
        co_return res;
    });
    INFO(up.describe());
    REQUIRE(up.succeeded());
    CHECK(up.out.find("X-Body-Length: 300000") != std::string::npos);
    CHECK(up.out.find("HTTP/1.1 200 OK") != std::string::npos);
    CHECK(up.out.find("Content-Length: 26") != std::string::npos); // the GET body's length, without the body
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("http server peers - CPython http.client: keep-alive requests, POST, chunked response, 404",
          "[http][server][peers]") {
    if (!coring_test::executable("/usr/bin/python3")) {
        WARN("/usr/bin/python3 is not installed: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    const process_result r = serve_while([](std::uint16_t port) -> task<process_result> {
        const std::string script = R"PY(
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
out = []
for name in ["a", "b%20c"]:
    c.request("GET", "/hello/" + name)
    r = c.getresponse()
    out.append(f"{r.status} {r.read().decode()}")
c.request("POST", "/echo", body=b"x" * 70000, headers={"Content-Type": "application/octet-stream"})
r = c.getresponse()
out.append(f"{r.status} {len(r.read())} {r.getheader('X-Body-Length')}")
c.request("GET", "/stream")
r = c.getresponse()
body = r.read().decode()
out.append(f"{r.status} {r.getheader('Transfer-Encoding')} {body.count(chr(10))}")
c.request("GET", "/missing")
r = c.getresponse()
out.append(f"{r.status} {r.read().decode().strip()}")
c.request("GET", "/peer", headers={"User-Agent": "cpython-test"})
r = c.getresponse()
out.append(f"{r.status} {r.read().decode()}")
print("|".join(out))
)PY";
        child_process py({"/usr/bin/python3", "-c", script, std::to_string(port)});
        process_result res = co_await finished(py, coring_test::peer_start_limit);
        co_return res;
    });
    INFO(r.describe());
    REQUIRE(r.succeeded());
    CHECK(r.out == "200 {\"message\": \"Hello, a\"}|200 {\"message\": \"Hello, b c\"}|200 70000 70000|200 chunked "
                   "100|404 Not Found|200 cpython-test\n");
    CHECK(coring_test::open_fds() == fds);
}

} // namespace

} // namespace test_server_peers
