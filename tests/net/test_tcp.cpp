#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace test_tcp {

using namespace std::chrono_literals;
using coring::address;
using coring::task;

namespace {

int int_option(int fd, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    REQUIRE(::getsockopt(fd, level, name, &v, &len) == 0);
    return v;
}

/// Echoes one connection until its end, then closes it.
task<> echo(coring::tcp_stream s) {
    char buf[4096];
    for (;;) {
        const std::size_t n = co_await s.read(std::span(buf));
        if (n == 0) break;
        co_await s.write_all(std::string_view(buf, n));
    }
    co_await s.close();
}

std::string bind_error(const address& at, const coring::listen_options& o = {}) {
    try {
        (void)coring::tcp_listener::bind(at, o);
    } catch (const std::system_error& e) {
        return std::to_string(e.code().value()) + " " + e.what();
    }
    return "";
}

} // namespace

TEST_CASE("tcp - listener on port 0: local_address, accept, the addresses of both ends, close", "[net][tcp]") {
    const int fds = coring_test::open_fds();
    for (const char* at : {"127.0.0.1:0", "[::1]:0"}) {
        if (std::string(at) == "[::1]:0" && !coring_test::ipv6_available()) continue;
        SECTION(at) {
            coring::run([](const char* where) -> task<> {
                auto l = coring::tcp_listener::bind(address::parse(where));
                const address local = l.local_address();
                CHECK(local.port() != 0);
                CHECK(local.family() == address::parse(where).family());
                CHECK(local == address::parse(where).with_port(local.port()));
                CHECK(l.native_handle() >= 0);

                auto accepted = coring::spawn(l.accept());
                auto c = co_await coring::tcp_stream::connect(local);
                auto s = co_await accepted;

                CHECK(c.peer_address() == local);
                CHECK(c.local_address().port() != 0);
                CHECK(c.local_address().family() == local.family());
                CHECK(s.peer_address() == c.local_address()); // from accept
                CHECK(s.local_address() == local);
                CHECK(c.is_open());
                CHECK(s.is_open());
                CHECK(c.native_handle() >= 0);

                co_await c.write_all("hello");
                char buf[5];
                co_await s.read_exact(std::span(buf));
                CHECK(std::string(buf, 5) == "hello");

                l.close();
                CHECK(l.native_handle() == -1);
                CHECK_THROWS_AS(co_await l.accept(), std::logic_error);
                // Nobody listens there any more.
                bool refused = false;
                try {
                    (void)co_await coring::tcp_stream::connect(local);
                } catch (const std::system_error& e) {
                    refused = e.code().value() == ECONNREFUSED;
                }
                CHECK(refused);

                co_await c.close();
                co_await s.close();
                CHECK_FALSE(c.is_open());
                CHECK(c.native_handle() == -1);
            }(at));
        }
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("tcp - bind errors name the address, a Unix address or an empty one is invalid_argument", "[net][tcp]") {
    const int fds = coring_test::open_fds();
    {
        auto first = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
        const address taken = first.local_address();
        const std::string err = bind_error(taken);
        INFO(err);
        CHECK(err.find(std::to_string(EADDRINUSE) + " ") == 0);
        CHECK(err.find("bind " + taken.to_string()) != std::string::npos);

        // SO_REUSEPORT on both lets two listeners share a port.
        coring::listen_options shared;
        shared.reuse_port = true;
        auto a = coring::tcp_listener::bind(address::parse("127.0.0.1:0"), shared);
        auto b = coring::tcp_listener::bind(a.local_address(), shared);
        CHECK(b.local_address() == a.local_address());

        CHECK_THROWS_AS(coring::tcp_listener::bind(address::parse("unix:/tmp/x.sock")), std::invalid_argument);
        CHECK_THROWS_AS(coring::tcp_listener::bind(address{}), std::invalid_argument);
        // An address that is not this machine's.
        const std::string foreign = bind_error(address::parse("192.0.2.200:0"));
        CHECK(foreign.find(std::to_string(EADDRNOTAVAIL) + " ") == 0);
    }
    coring::run(
        []() -> task<> { CHECK_THROWS_AS(co_await coring::tcp_stream::connect(address{}), std::invalid_argument); }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("tcp - connect by host and port tries each resolved address until one accepts", "[net][tcp]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        // Listen on the family of the last address "localhost" resolves to: if there are several (::1 and
        // 127.0.0.1), the earlier ones are refused and connect goes on to the next.
        const std::vector<address> candidates = co_await coring::resolve("localhost", 0);
        REQUIRE_FALSE(candidates.empty());
        auto l = coring::tcp_listener::bind(candidates.back());
        const std::uint16_t port = l.local_address().port();
        INFO("localhost resolves to " << candidates.size() << " address(es); listening on "
                                      << l.local_address().to_string());

        auto accepted = coring::spawn(l.accept());
        auto c = co_await coring::tcp_stream::connect("localhost", port);
        auto s = co_await accepted;
        CHECK(c.peer_address() == l.local_address());
        co_await c.write_all("x");
        char x;
        const std::size_t n = co_await s.read(std::span(&x, 1));
        CHECK(n == 1);

        // A numeric host needs no lookup.
        auto accepted2 = coring::spawn(l.accept());
        auto c2 = co_await coring::tcp_stream::connect(l.local_address().is_ipv4() ? "127.0.0.1" : "::1", port);
        auto s2 = co_await accepted2;
        CHECK(s2.peer_address() == c2.local_address());

        // Every address refused: the last error, with every address tried in the message.
        l.close();
        std::string what;
        int code = 0;
        try {
            (void)co_await coring::tcp_stream::connect("localhost", port);
        } catch (const std::system_error& e) {
            what = e.what();
            code = e.code().value();
        }
        INFO(what);
        CHECK(code == ECONNREFUSED);
        CHECK(what.find("connect localhost:" + std::to_string(port)) != std::string::npos);
        for (const address& a : candidates) CHECK(what.find(a.with_port(port).to_string()) != std::string::npos);

        // A name that does not resolve fails with resolve()'s error.
        std::string unresolved;
        try {
            (void)co_await coring::tcp_stream::connect("nonexistent.invalid", port);
        } catch (const std::system_error& e) {
            unresolved = e.what();
        }
        CHECK(unresolved.find("nonexistent.invalid") != std::string::npos);
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("tcp - an IPv6 wildcard listener also takes IPv4 clients unless bindv6only is set", "[net][tcp]") {
    if (!coring_test::ipv6_available()) {
        WARN("no IPv6 on this machine: skipped");
        return;
    }
    int v6only = 0;
    if (std::FILE* f = std::fopen("/proc/sys/net/ipv6/bindv6only", "r")) {
        if (std::fscanf(f, "%d", &v6only) != 1) v6only = 1;
        std::fclose(f);
    }
    if (v6only) {
        WARN("net.ipv6.bindv6only is set: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto l = coring::tcp_listener::bind(address::parse("[::]:0"));
        auto accepted = coring::spawn(l.accept());
        auto c =
            co_await coring::tcp_stream::connect(address::parse("127.0.0.1:0").with_port(l.local_address().port()));
        auto s = co_await accepted;
        // The server sees its IPv4 client as a v4-mapped IPv6 address.
        CHECK(s.peer_address().to_string() == "[::ffff:127.0.0.1]:" + std::to_string(c.local_address().port()));
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("tcp - socket options reach the socket: nodelay, keepalive, buffer sizes", "[net][tcp]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto [c, s] = co_await coring_test::connect_pair(coring_test::tcp_v4{});
        c.set_nodelay(true);
        CHECK(int_option(c.native_handle(), IPPROTO_TCP, TCP_NODELAY) == 1);
        c.set_nodelay(false);
        CHECK(int_option(c.native_handle(), IPPROTO_TCP, TCP_NODELAY) == 0);
        c.set_keepalive(true);
        CHECK(int_option(c.native_handle(), SOL_SOCKET, SO_KEEPALIVE) == 1);
        c.set_keepalive(false);
        CHECK(int_option(c.native_handle(), SOL_SOCKET, SO_KEEPALIVE) == 0);

        // The kernel doubles the value (for its bookkeeping) and has a minimum; it stays small.
        s.set_send_buffer_size(4096);
        s.set_receive_buffer_size(4096);
        const int snd = int_option(s.native_handle(), SOL_SOCKET, SO_SNDBUF);
        const int rcv = int_option(s.native_handle(), SOL_SOCKET, SO_RCVBUF);
        CHECK(snd >= 4096);
        CHECK(snd <= 4 * 4096);
        CHECK(rcv >= 2048);
        CHECK(rcv <= 4 * 4096);
        s.set_send_buffer_size(1 << 20);
        CHECK(int_option(s.native_handle(), SOL_SOCKET, SO_SNDBUF) > snd);

        // On a closed stream an option is a std::system_error (EBADF) naming the option and the peer.
        co_await c.close();
        std::string what;
        try {
            c.set_nodelay(true);
        } catch (const std::system_error& e) {
            what = std::to_string(e.code().value()) + " " + e.what();
        }
        INFO(what);
        CHECK(what.find(std::to_string(EBADF) + " ") == 0);
        CHECK(what.find("TCP_NODELAY") != std::string::npos);
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("tcp - read and write overloads: bytes, chars, string_view, empty buffers do not wait", "[net][tcp]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto [c, s] = co_await coring_test::connect_pair(coring_test::tcp_v4{});
        const std::size_t w1 = co_await c.write(std::string_view("abc"));
        CHECK(w1 == 3);
        const std::byte raw[] = {std::byte{'d'}, std::byte{'e'}};
        const std::size_t w2 = co_await c.write_all(std::span<const std::byte>(raw));
        CHECK(w2 == 2);
        const std::size_t w3 = co_await c.write(std::span<const std::byte>(raw).first(1));
        CHECK(w3 == 1);
        const std::size_t w4 = co_await c.write(std::string_view());
        CHECK(w4 == 0);
        const std::size_t w5 = co_await c.write_all(std::string_view());
        CHECK(w5 == 0);

        std::string got;
        char chars[2];
        std::byte bytes[8];
        while (got.size() < 6) {
            const std::size_t n = co_await s.read(std::span(chars));
            REQUIRE(n > 0);
            CHECK(n <= 2);
            got.append(chars, n);
            if (got.size() >= 6) break;
            const std::size_t m = co_await s.read(std::span(bytes));
            REQUIRE(m > 0);
            got.append(reinterpret_cast<const char*>(bytes), m);
        }
        CHECK(got == "abcded");

        // Reading into an empty buffer returns 0 at once: it does not wait for data (and is not the end).
        const std::size_t empty = co_await s.read(std::span<char>());
        CHECK(empty == 0);
        co_await c.write_all("!");
        char bang = 0;
        const std::size_t one = co_await s.read(std::span(&bang, 1));
        CHECK(one == 1);
        CHECK(bang == '!');
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("tcp - misuse is a logic_error: two reads or two writes at once, I/O on a closed stream", "[net][tcp]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto [c, s] = co_await coring_test::connect_pair(coring_test::tcp_v4{});
        auto reader = coring::spawn([](coring::tcp_stream& st) -> task<std::string> {
            char buf[16];
            const std::size_t n = co_await st.read(std::span(buf));
            co_return std::string(buf, n);
        }(s));
        co_await coring::sleep(5ms);
        char buf[4];
        CHECK_THROWS_AS(co_await s.read(std::span(buf)), std::logic_error);
        CHECK_THROWS_AS(co_await s.read_exact(std::span(buf)), std::logic_error);
        CHECK_THROWS_AS(co_await s.read_until('\n'), std::logic_error);
        // The first read is undisturbed.
        co_await c.write_all("first");
        const std::string first = co_await reader;
        CHECK(first == "first");

        // Two writes: the first blocks on a peer that does not read (small buffers), the second is refused.
        c.set_send_buffer_size(4096);
        s.set_receive_buffer_size(4096);
        const std::string big(4 << 20, 'w');
        auto writer = coring::spawn(
            [](coring::tcp_stream& st, const std::string& data) -> task<> { co_await st.write_all(data); }(c, big));
        co_await coring::sleep(5ms);
        CHECK_THROWS_AS(co_await c.write_all("x"), std::logic_error);
        CHECK_FALSE(writer.done());
        writer.cancel();
        CHECK_THROWS_AS(co_await writer, coring::cancelled_error);

        co_await s.close();
        CHECK_THROWS_AS(co_await s.read(std::span(buf)), std::logic_error);
        CHECK_THROWS_AS(co_await s.write_all("x"), std::logic_error);
        CHECK_THROWS_AS(co_await s.shutdown(), std::logic_error);
        co_await s.close(); // twice: harmless
        CHECK_THROWS_AS(s.read_until(std::string()), std::invalid_argument);
        CHECK_THROWS_AS(s.set_limit(0), std::invalid_argument);
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("tcp - an echo server serves many clients at once", "[net][tcp]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
        auto server = coring::spawn([](coring::tcp_listener& lis) -> task<> {
            coring::task_group g;
            for (int i = 0; i < 200; ++i) {
                auto s = co_await lis.accept();
                g.spawn(echo(std::move(s)));
            }
            co_await g.join();
        }(l));
        std::vector<task<>> clients;
        for (int i = 0; i < 200; ++i) {
            clients.push_back([](address at, int id) -> task<> {
                auto c = co_await coring::tcp_stream::connect(at);
                c.set_nodelay(true);
                for (int round = 0; round < 5; ++round) {
                    const std::string line = "client " + std::to_string(id) + " round " + std::to_string(round) + "\n";
                    co_await c.write_all(line);
                    const std::string back = co_await c.read_until('\n');
                    CHECK(back == line);
                }
                co_await c.shutdown();
                const std::string end = co_await c.read_until('\n');
                CHECK(end.empty());
            }(l.local_address(), i));
        }
        co_await coring::gather(std::move(clients));
        co_await server;
    }());
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_tcp
