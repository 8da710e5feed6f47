// Real peers nobody here wrote: CPython's asyncio as client and as server, curl, and netcat against coring streams.

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"
#include "support/peer_process.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

namespace test_peers {

using namespace std::chrono_literals;
using coring::address;
using coring::task;
using coring_test::child_process;
using coring_test::finished;
using coring_test::process_result;

namespace {

// Debian's interpreter, not whichever python3 comes first on PATH (a pyenv shim, a virtualenv); -I keeps PYTHONPATH,
// the user's site-packages and the current directory out of it.
constexpr const char* python = "/usr/bin/python3";
constexpr const char* curl = "/usr/bin/curl";

/// One line of the child's stdout, read on a worker thread.
task<std::string> line_of(child_process& p, std::chrono::milliseconds limit) {
    co_return co_await coring::to_thread([](child_process* c, std::chrono::milliseconds l) { return c->read_line(l); },
                                         &p, limit);
}

struct echo_stats {
    int connections = 0;
    std::uint64_t bytes = 0;
    int failures = 0;
    std::string failure;
};

/// Echoes one connection until the peer ends it, then closes.
template <class S>
task<> echo(S s, echo_stats& st) {
    char buf[16384];
    try {
        for (;;) {
            const std::size_t n = co_await s.read(std::span(buf));
            if (n == 0) break;
            co_await s.write_all(std::string_view(buf, n));
            st.bytes += n;
        }
    } catch (const std::system_error& e) {
        ++st.failures;
        st.failure = e.what();
    }
    co_await s.close();
}

/// Accepts `n` connections and echoes each in a task of its own.
template <class L>
task<> echo_server(L& l, int n, echo_stats& st) {
    coring::task_group conns;
    for (int i = 0; i < n; ++i) {
        auto s = co_await l.accept();
        ++st.connections;
        conns.spawn(echo(std::move(s), st));
    }
    co_await conns.join();
}

// ---- CPython asyncio as the client ------------------------------------------------------------------------------

// 20 clients at once, each 20 lines of different lengths, answered one by one, then the end of the stream (which the
// server answers by closing); one more client sends 1 MiB in one write while it reads the echo.
constexpr const char* asyncio_client = R"py(
import asyncio, sys

async def lines(port, i):
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    for k in range(20):
        line = f'client {i} line {k} '.encode() + b'x' * ((i * 37 + k * 11) % 500) + b'\n'
        writer.write(line)
        await writer.drain()
        back = await reader.readline()
        if back != line:
            raise SystemExit(f'client {i} line {k}: sent {line!r}, got {back!r}')
    writer.write_eof()
    rest = await reader.read()
    if rest:
        raise SystemExit(f'client {i}: {len(rest)} unexpected bytes after the last echo')
    writer.close()
    await writer.wait_closed()

async def big(port):
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    data = bytes(range(256)) * 4096
    async def send():
        writer.write(data)
        await writer.drain()
        writer.write_eof()
    _, back = await asyncio.gather(send(), reader.readexactly(len(data)))
    if back != data:
        raise SystemExit('the 1 MiB echo differs')
    writer.close()
    await writer.wait_closed()

async def main():
    port = int(sys.argv[1])
    clients = [lines(port, i) for i in range(20)] + [big(port)]
    await asyncio.wait_for(asyncio.gather(*clients), 20)
    print('ok')

asyncio.run(main())
)py";

task<> serve_asyncio_clients() {
    auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
    echo_stats st;
    auto server = coring::spawn(echo_server(l, 21, st));
    child_process py({python, "-I", "-c", asyncio_client, std::to_string(l.local_address().port())});
    const process_result r = co_await finished(py, 30000ms);
    INFO(r.describe());
    CHECK(r.succeeded());
    CHECK(r.out == "ok\n");
    co_await coring::timeout(5s, server);
    INFO(st.failure);
    CHECK(st.connections == 21);
    CHECK(st.failures == 0);
    std::uint64_t expected = 1 << 20;
    for (int i = 0; i < 20; ++i)
        for (int k = 0; k < 20; ++k)
            expected += ("client " + std::to_string(i) + " line " + std::to_string(k) + " ").size() +
                        static_cast<std::uint64_t>((i * 37 + k * 11) % 500) + 1;
    CHECK(st.bytes == expected);
}

// ---- CPython asyncio as the server ------------------------------------------------------------------------------

// An echo server that prints its port, serves argv[1] connections and exits after the last one.
constexpr const char* asyncio_server = R"py(
import asyncio, sys

async def main():
    expected = int(sys.argv[1])
    served = 0
    all_served = asyncio.Event()

    async def handle(reader, writer):
        nonlocal served
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            served += 1
            if served == expected:
                all_served.set()

    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.wait_for(all_served.wait(), 30)
    server.close()
    await server.wait_closed()
    print(f'served {served}')

asyncio.run(main())
)py";

/// Writes `data`, then half-closes (the peer reads the end after the last byte).
task<> send_then_end(coring::tcp_stream& s, const std::string& data) {
    co_await s.write_all(data);
    co_await s.shutdown();
}

/// 1 MiB through the peer and back, compared by checksum; the reads come in whatever pieces the peer writes.
task<> megabyte_round_trip(address at) {
    auto c = co_await coring::tcp_stream::connect(at);
    const std::string data = coring_test::pattern(7).text(1 << 20);
    coring_test::checksum sent;
    sent.update(data);
    auto writer = coring::spawn(send_then_end(c, data));
    coring_test::checksum got;
    std::string buf(65536, '\0');
    for (;;) {
        const std::size_t n = co_await c.read(std::span(buf));
        if (n == 0) break;
        got.update(std::string_view(buf.data(), n));
    }
    co_await writer;
    CHECK(got.bytes() == sent.bytes());
    CHECK(got.value() == sent.value());
    co_await c.close();
}

/// Lines one at a time, then a batch in one write that comes back split into lines by read_until.
task<> line_client(address at, int id) {
    auto c = co_await coring::tcp_stream::connect(at);
    c.set_nodelay(true);
    for (int k = 0; k < 20; ++k) {
        const std::string line = "coring " + std::to_string(id) + " line " + std::to_string(k) + " " +
                                 std::string(static_cast<std::size_t>((id * 13 + k * 7) % 300), '-') + "\n";
        co_await c.write_all(line);
        const std::string back = co_await c.read_until('\n');
        CHECK(back == line);
    }
    std::string batch;
    for (int k = 0; k < 200; ++k) batch += "batch " + std::to_string(id) + "." + std::to_string(k) + "\n";
    co_await c.write_all(batch);
    co_await c.shutdown();
    std::string back;
    for (int k = 0; k < 200; ++k) {
        const std::string line = co_await c.read_until('\n');
        CHECK(line == "batch " + std::to_string(id) + "." + std::to_string(k) + "\n");
        back += line;
    }
    CHECK(back == batch);
    const std::string end = co_await c.read_until('\n');
    CHECK(end.empty());
    co_await c.close();
}

task<> against_asyncio_server() {
    constexpr int line_clients = 10;
    child_process py({python, "-I", "-c", asyncio_server, std::to_string(line_clients + 1)});
    const std::string port_line = co_await line_of(py, coring_test::peer_start_limit);
    if (port_line.empty()) {
        const process_result r = co_await finished(py, 1000ms);
        FAIL("the asyncio server printed no port: " << r.describe());
    }
    const address at = address::parse("127.0.0.1:" + port_line);
    co_await megabyte_round_trip(at);
    std::vector<task<>> clients;
    for (int i = 0; i < line_clients; ++i) clients.push_back(line_client(at, i));
    co_await coring::gather(std::move(clients));
    const process_result r = co_await finished(py, 30000ms);
    INFO(r.describe());
    CHECK(r.succeeded());
    CHECK(r.out == "served " + std::to_string(line_clients + 1) + "\n");
}

// ---- curl ---------------------------------------------------------------------------------------------------------

/// A one-request HTTP/1.1 responder: reads the head (and a Content-Length body), answers `body` to a GET and
/// "you sent: <body>" to a POST, then closes. Keeps the request head for the test to look at.
task<> http_once(coring::tcp_listener& l, std::string body, std::string& head) {
    auto s = co_await l.accept();
    head = co_await s.read_until("\r\n\r\n");
    std::string answer = body;
    const std::string length_field = "Content-Length: ";
    if (const std::size_t at = head.find(length_field); at != std::string::npos) {
        std::string payload(std::stoul(head.substr(at + length_field.size())), '\0');
        co_await s.read_exact(std::span(payload));
        answer = "you sent: " + payload;
    }
    const std::string response =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(answer.size()) +
        "\r\nConnection: close\r\n\r\n" + answer;
    co_await s.write_all(response);
    co_await s.close();
}

/// curl without the user's .curlrc (-q, first) or proxy settings, quiet but for errors, with a deadline.
std::vector<std::string> curl_command(std::vector<std::string> extra, const std::string& url) {
    std::vector<std::string> argv = {curl, "-q", "-sS", "--noproxy", "*", "--max-time", "20"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    return argv;
}

task<> curl_fetches() {
    auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
    const std::string host = "127.0.0.1:" + std::to_string(l.local_address().port());
    {
        // A GET of about 100 KiB: more than one write on our side, more than one read on curl's.
        std::string body;
        for (int i = 0; body.size() < 100000; ++i) body += "line " + std::to_string(i) + " of the page\n";
        std::string head;
        auto server = coring::spawn(http_once(l, body, head));
        child_process get(curl_command({}, "http://" + host + "/hello"));
        const process_result r = co_await finished(get, 30000ms);
        co_await coring::timeout(5s, server);
        INFO(r.describe());
        CHECK(r.succeeded());
        CHECK(r.out.size() == body.size());
        CHECK(r.out == body);
        INFO(head);
        CHECK_THAT(head, Catch::StartsWith("GET /hello HTTP/1.1\r\n"));
        CHECK_THAT(head, Catch::Contains("\r\nHost: " + host + "\r\n"));
        CHECK_THAT(head, Catch::Contains("\r\nUser-Agent: curl/"));
    }
    {
        // A POST: the head, then exactly Content-Length bytes (read_exact); no "Expect: 100-continue" round.
        std::string head;
        auto server = coring::spawn(http_once(l, "", head));
        child_process post(curl_command({"-H", "Expect:", "--data-binary", "name=coring&kind=asyncio+for+C%2B%2B"},
                                        "http://" + host + "/echo"));
        const process_result r = co_await finished(post, 30000ms);
        co_await coring::timeout(5s, server);
        INFO(r.describe());
        CHECK(r.succeeded());
        CHECK(r.out == "you sent: name=coring&kind=asyncio+for+C%2B%2B");
        INFO(head);
        CHECK_THAT(head, Catch::StartsWith("POST /echo HTTP/1.1\r\n"));
    }
}

// ---- netcat -------------------------------------------------------------------------------------------------------

/// OpenBSD netcat (Debian's netcat-openbsd), whose -N and -U the test needs; empty when there is none.
std::string openbsd_netcat() {
    for (const char* path : {"/usr/bin/nc", "/bin/nc"}) {
        if (!coring_test::executable(path)) continue;
        child_process help({path, "-h"});
        const process_result r = help.wait(10000ms);
        if ((r.out + r.err).find("OpenBSD netcat") != std::string::npos) return path;
    }
    return "";
}

/// seq 1 n, as seq prints it.
std::string seq(int n) {
    std::string s;
    for (int i = 1; i <= n; ++i) s += std::to_string(i) + "\n";
    return s;
}

/// netcat sends seq's output (about 110 KiB) to a coring echo server, half-closes at the end of its input (-N) and
/// prints what comes back until the server closes.
template <class F>
task<> netcat_echo(F, std::string nc) {
    coring_test::test_server<F> srv;
    echo_stats st;
    auto server = coring::spawn(echo_server(srv.listener(), 1, st));
    std::string target;
    if constexpr (coring_test::is_tcp<F>) target = "127.0.0.1 " + std::to_string(srv.address().port());
    else target = "-U " + srv.listener().path();
    child_process p({"/bin/sh", "-c", "seq 1 20000 | " + nc + " -N " + target});
    const process_result r = co_await finished(p, 30000ms);
    co_await coring::timeout(5s, server);
    INFO(r.describe());
    CHECK(r.succeeded());
    const std::string expected = seq(20000);
    CHECK(r.out.size() == expected.size());
    CHECK(r.out == expected);
    INFO(st.failure);
    CHECK(st.connections == 1);
    CHECK(st.failures == 0);
    CHECK(st.bytes == expected.size());
}

} // namespace

TEST_CASE("peers - CPython asyncio clients against a coring echo server", "[net][peers]") {
    if (!coring_test::executable(python)) {
        WARN(python << " is not installed: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    coring::run(serve_asyncio_clients());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("peers - coring clients against a CPython asyncio echo server: 1 MiB with checksum, lines", "[net][peers]") {
    if (!coring_test::executable(python)) {
        WARN(python << " is not installed: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    coring::run(against_asyncio_server());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("peers - curl fetches from an HTTP responder written with coring streams", "[net][peers]") {
    if (!coring_test::executable(curl)) {
        WARN(curl << " is not installed: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    coring::run(curl_fetches());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("peers - netcat as an echo client over TCP and a Unix socket", "[net][peers]") {
    const std::string nc = openbsd_netcat();
    if (nc.empty()) {
        WARN("no OpenBSD netcat (Debian package netcat-openbsd) at /usr/bin/nc or /bin/nc: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    SECTION("tcp-v4") { coring::run(netcat_echo(coring_test::tcp_v4{}, nc)); }
    SECTION("unix") { coring::run(netcat_echo(coring_test::unix_path{}, nc)); }
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_peers
