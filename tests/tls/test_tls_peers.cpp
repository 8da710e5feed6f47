// tls::stream against real peers nobody here wrote: openssl s_server and s_client, and CPython's ssl module as
// client and as server; TLS 1.2 and 1.3, ALPN, key updates, close_notify and truncation, 64 MiB through an echo.

#include "support/tls_helpers.hpp"

#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <catch2/catch.hpp>

#include <exception>
#include <string>
#include <vector>

namespace test_tls_peers {

using namespace std::chrono_literals;
using coring::task;
using coring_test::piped_process;
using coring_test::tls_certs;

namespace {

constexpr const char* openssl_bin = "/usr/bin/openssl";
// Debian's interpreter, isolated (-I) from the user's site-packages and PYTHONPATH.
constexpr const char* python_bin = "/usr/bin/python3";

std::vector<std::string> s_server_args(std::uint16_t port, const std::string& version, bool rev) {
    const auto& c = tls_certs::get();
    std::vector<std::string> a{openssl_bin,  "s_server",  "-accept", "127.0.0.1:" + std::to_string(port),
                               "-cert",      c.leaf.cert, "-key",    c.leaf.key,
                               "-naccept",   "1",         version,   "-alpn",
                               "h2,http/1.1"};
    if (rev) a.push_back("-rev");
    return a;
}

task<coring::tls::stream> connect_to(std::uint16_t port, std::vector<std::string> alpn, std::string name) {
    auto ctx = coring_test::test_client_context();
    if (!alpn.empty()) ctx.set_alpn(std::move(alpn));
    auto tcp = co_await coring::tcp_stream::connect(coring::address::parse("127.0.0.1:" + std::to_string(port)));
    co_return co_await coring::tls::stream::connect(std::move(ctx), std::move(tcp), std::move(name));
}

} // namespace

TEST_CASE("tls peers - openssl s_server: handshake, ALPN, lines both ways, close_notify, TLS 1.2 and 1.3",
          "[tls][peers][openssl]") {
    REQUIRE(coring_test::executable(openssl_bin));
    for (const std::string version : {"-tls1_2", "-tls1_3"}) {
        INFO(version);
        const std::uint16_t port = coring_test::free_port();
        piped_process srv(s_server_args(port, version, true));
        coring::run([](piped_process& srv, std::uint16_t port, std::string version) -> task<> {
            co_await srv.expect("ACCEPT", 10s); // s_server listens
            std::vector<std::string> alpn{"http/1.1", "h2"};
            auto s = co_await connect_to(port, std::move(alpn), "localhost");
            CHECK(s.version() == (version == "-tls1_2" ? "TLSv1.2" : "TLSv1.3"));
            CHECK(s.alpn() == "h2"); // the server's first choice that the client offers
            for (int i = 0; i < 5; ++i) {
                const std::string line = "line number " + std::to_string(i);
                co_await s.write_all(line + "\n");
                const std::string back = co_await coring::timeout(5s, s.read_until("\n"));
                CHECK(back == std::string(line.rbegin(), line.rend()) + "\n"); // -rev answers each line reversed
            }
            co_await s.write_all("CLOSE\n"); // s_server -rev: says so, sends close_notify and ends
            std::string rest;
            char buf[256];
            for (;;) {
                const std::size_t n = co_await coring::timeout(5s, s.read(std::span<char>(buf)));
                if (n == 0) break;
                rest.append(buf, n);
            }
            CHECK(s.peer_closed());
            co_await s.close();
        }(srv, port, version));
    }
}

TEST_CASE("tls peers - openssl s_server sends a key update: answered, data goes on both ways",
          "[tls][peers][openssl]") {
    REQUIRE(coring_test::executable(openssl_bin));
    const std::uint16_t port = coring_test::free_port();
    piped_process srv(s_server_args(port, "-tls1_3", false));
    coring::run([](piped_process& srv, std::uint16_t port) -> task<> {
        co_await srv.expect("ACCEPT", 10s);                  // s_server listens
        auto s = co_await connect_to(port, {}, "127.0.0.1"); // by IP address: the leaf has IP:127.0.0.1
        co_await s.write_all("first from coring\n");
        bool seen = co_await srv.wait_for("first from coring", 5s);
        CHECK(seen);
        for (int i = 0; i < 3; ++i) {
            srv.send("K\n");               // s_server: a KeyUpdate asking the client to update too
            co_await coring::sleep(200ms); // s_server takes one read of stdin as one command or one message
            const std::string msg = "from s_server " + std::to_string(i) + "\n";
            srv.send(msg);
            const std::string got = co_await coring::timeout(5s, s.read_until("\n"));
            CHECK(got == msg);
            const std::string mine = "from coring " + std::to_string(i);
            co_await s.write_all(mine + "\n");
            seen = co_await srv.wait_for(mine, 5s);
            INFO(srv.output());
            CHECK(seen);
        }
        INFO(srv.output());
        // s_server 3.0 reports each 'K' as the SSL_do_handshake that sent the KeyUpdate.
        std::size_t updates = 0;
        for (std::size_t at = 0; (at = srv.output().find("SSL_do_handshake -> 1", at)) != std::string::npos; ++at)
            ++updates;
        CHECK(updates == 3);
        co_await s.close();
    }(srv, port));
}

namespace {

/// A coring TLS server for one connection: reads a line, answers "PONG <line>", sends close_notify.
task<std::string> pong_once(coring::tcp_listener& l, coring::tls::context ctx) {
    auto tcp = co_await l.accept();
    auto s = co_await coring::tls::stream::accept(std::move(ctx), std::move(tcp));
    const std::string line = co_await coring::timeout(10s, s.read_until("\n"));
    const std::string answer = "PONG " + line;
    co_await s.write_all(answer);
    const std::string info = std::string(s.version()) + " " + std::string(s.alpn());
    co_await s.close();
    co_return info;
}

} // namespace

TEST_CASE("tls peers - openssl s_client against a coring server, TLS 1.2 and 1.3, ALPN", "[tls][peers][openssl]") {
    REQUIRE(coring_test::executable(openssl_bin));
    const auto& c = tls_certs::get();
    for (const std::string version : {"-tls1_2", "-tls1_3"}) {
        INFO(version);
        coring::run([](const tls_certs* c, std::string version) -> task<> {
            auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
            auto ctx = coring_test::test_server_context();
            ctx.set_alpn({"http/1.1"});
            auto server = coring::spawn(pong_once(l, ctx));
            piped_process cli({openssl_bin, "s_client", "-connect",
                               "127.0.0.1:" + std::to_string(l.local_address().port()), "-CAfile", c->ca.string(),
                               "-verify_return_error", "-servername", "localhost", "-verify_hostname", "localhost",
                               "-alpn", "h2,http/1.1", "-quiet", version});
            cli.send("ping from s_client\n");
            const std::string info = co_await coring::timeout(10s, std::move(server));
            const int status = co_await cli.exit_status(10s);
            INFO(cli.output());
            CHECK(info == (version == "-tls1_2" ? "TLSv1.2 http/1.1" : "TLSv1.3 http/1.1"));
            CHECK(cli.output().find("PONG ping from s_client") != std::string::npos);
            CHECK(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0); // it read close_notify: a clean end
        }(&c, version));
    }
}

namespace {

const char* python_client = R"PY(
import socket, ssl, sys
port, ca, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2", "http/1.1"])
v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
ctx.minimum_version = ctx.maximum_version = v
with socket.create_connection(("127.0.0.1", port)) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"ping from python\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break  # close_notify: a clean end (a truncation raises SSLEOFError)
            data += chunk
        print(s.version(), s.selected_alpn_protocol(), data.decode().strip(), flush=True)
)PY";

const char* python_server = R"PY(
import socket, ssl, sys
cert, key, version, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["http/1.1"])
v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
ctx.minimum_version = ctx.maximum_version = v
srv = socket.create_server(("127.0.0.1", 0))
print("READY", srv.getsockname()[1], flush=True)
raw, _ = srv.accept()
s = ctx.wrap_socket(raw, server_side=True)
if mode == "echo":
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        s.sendall(chunk)
    s.unwrap()
else:
    line = b""
    while not line.endswith(b"\n"):
        line += s.recv(4096)
    s.sendall(line[::-1][1:] + b"\n")
    if mode == "unwrap":
        s.unwrap()  # close_notify
    else:
        s.detach().close()  # the TCP connection ends without close_notify
print("DONE", flush=True)
)PY";

/// Starts the CPython server and returns its port.
task<std::uint16_t> python_server_port(piped_process& p) {
    const bool ready = co_await p.wait_for("\n", coring_test::peer_start_limit);
    INFO(p.output());
    REQUIRE(ready);
    const auto at = p.output().find("READY ");
    REQUIRE(at != std::string::npos);
    co_return static_cast<std::uint16_t>(std::stoi(p.output().substr(at + 6)));
}

std::vector<std::string> python_server_args(const std::string& version, const std::string& mode) {
    const auto& c = tls_certs::get();
    return {python_bin, "-I", "-c", python_server, c.leaf.cert.string(), c.leaf.key.string(), version, mode};
}

} // namespace

TEST_CASE("tls peers - CPython's ssl client against a coring server, TLS 1.2 and 1.3, ALPN", "[tls][peers][python]") {
    REQUIRE(coring_test::executable(python_bin));
    for (const std::string version : {"1.2", "1.3"}) {
        INFO(version);
        coring::run([](std::string version) -> task<> {
            auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
            auto ctx = coring_test::test_server_context();
            ctx.set_alpn({"http/1.1", "h2"});
            auto server = coring::spawn(pong_once(l, ctx));
            piped_process cli({python_bin, "-I", "-c", python_client, std::to_string(l.local_address().port()),
                               tls_certs::get().ca.string(), version});
            // The server's handshake waits for CPython to start (see peer_start_limit).
            const std::string info = co_await coring::timeout(coring_test::peer_start_limit, std::move(server));
            const int status = co_await cli.exit_status(10s);
            INFO(cli.output());
            CHECK(info == "TLSv" + version + " http/1.1");
            CHECK(cli.output().find("TLSv" + version + " http/1.1 PONG ping from python") != std::string::npos);
            CHECK(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0);
        }(version));
    }
}

TEST_CASE("tls peers - CPython's ssl server: close_notify reads as the end, a bare TCP close is tls::truncated",
          "[tls][peers][python]") {
    REQUIRE(coring_test::executable(python_bin));
    for (const std::string version : {"1.2", "1.3"})
        for (const std::string mode : {"unwrap", "close"}) {
            INFO(version << " " << mode);
            piped_process srv(python_server_args(version, mode));
            coring::run([](piped_process& srv, std::string version, std::string mode) -> task<> {
                const std::uint16_t port = co_await python_server_port(srv);
                std::vector<std::string> alpn{"h2", "http/1.1"};
                auto s = co_await connect_to(port, std::move(alpn), "localhost");
                CHECK(s.version() == "TLSv" + version);
                CHECK(s.alpn() == "http/1.1");
                co_await s.write_all("stressed\n");
                const std::string back = co_await coring::timeout(5s, s.read_until("\n"));
                CHECK(back == "desserts\n");
                bool truncated = false;
                std::size_t n = 1;
                try {
                    char c;
                    n = co_await coring::timeout(5s, s.read(std::span<char>(&c, 1)));
                } catch (const coring::tls::truncated&) {
                    truncated = true;
                }
                if (mode == "unwrap") {
                    CHECK_FALSE(truncated);
                    CHECK(n == 0);
                } else {
                    CHECK(truncated);
                }
                co_await s.close();
                const int status = co_await srv.exit_status(10s);
                INFO(srv.output());
                CHECK(WIFEXITED(status));
            }(srv, version, mode));
        }
}

namespace {

task<std::uint64_t> send_bytes(coring::tls::stream& s, std::size_t total) {
    coring_test::pattern gen(7);
    coring_test::checksum sum;
    std::string chunk(256 * 1024, '\0');
    for (std::size_t sent = 0; sent < total; sent += chunk.size()) {
        gen.fill(std::as_writable_bytes(std::span(chunk)));
        co_await s.write_all(chunk);
        sum.update(chunk);
    }
    co_await s.shutdown(); // close_notify: the echo ends, and answers with its own
    co_return sum.value();
}

} // namespace

TEST_CASE("tls peers - 64 MiB through CPython's ssl echo server, checksummed", "[tls][peers][python][bulk]") {
    REQUIRE(coring_test::executable(python_bin));
    piped_process srv(python_server_args("1.3", "echo"));
    coring::run([](piped_process& srv) -> task<> {
        const std::uint16_t port = co_await python_server_port(srv);
        auto s = co_await connect_to(port, {}, "localhost");
        const std::size_t total = 64u << 20;
        auto sender = coring::spawn(send_bytes(s, total));
        coring_test::checksum got;
        std::string buf(64 * 1024, '\0');
        std::exception_ptr failed;
        try {
            for (;;) {
                const std::size_t n = co_await coring::timeout(30s, s.read(std::span<char>(buf)));
                if (n == 0) break;
                got.update(std::string_view(buf.data(), n));
            }
        } catch (...) {
            failed = std::current_exception();
        }
        if (failed) { // the sender writes on `s`: it stops before `s` goes
            sender.cancel();
            try {
                (void)co_await std::move(sender);
            } catch (...) {}
            std::rethrow_exception(failed);
        }
        const std::uint64_t sent = co_await std::move(sender);
        CHECK(got.bytes() == total);
        CHECK(got.value() == sent);
        co_await s.close();
    }(srv));
}

} // namespace test_tls_peers
