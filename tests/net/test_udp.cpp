#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <stdexcept>
#include <string>
#include <system_error>

namespace test_udp {

using namespace std::chrono_literals;
using coring::address;
using coring::task;

TEST_CASE("udp - bind port 0, send_to and recv_from with the sender's address, over IPv4 and IPv6", "[net][udp]") {
    const int fds = coring_test::open_fds();
    for (const char* at : {"127.0.0.1:0", "[::1]:0"}) {
        if (std::string(at) == "[::1]:0" && !coring_test::ipv6_available()) continue;
        SECTION(at) {
            coring::run([](const char* where) -> task<> {
                auto server = coring::udp_socket::bind(address::parse(where));
                auto client = coring::udp_socket::bind(address::parse(where));
                const address server_at = server.local_address();
                CHECK(server_at.port() != 0);
                CHECK(server_at.family() == address::parse(where).family());
                CHECK(server.native_handle() >= 0);

                const std::size_t sent = co_await client.send_to("hello", server_at);
                CHECK(sent == 5);
                char buf[64];
                auto [n, from] = co_await server.recv_from(std::span(buf));
                CHECK(n == 5);
                CHECK(std::string(buf, n) == "hello");
                CHECK(from == client.local_address());

                // Answer the sender at the address it came from.
                const std::size_t back = co_await server.send_to(std::string_view(buf, n), from);
                CHECK(back == 5);
                std::byte bytes[64];
                auto [m, reply_from] = co_await client.recv_from(std::span(bytes));
                CHECK(m == 5);
                CHECK(reply_from == server_at);
            }(at));
        }
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("udp - connect sets the default peer for send and recv", "[net][udp]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto a = coring::udp_socket::bind(address::parse("127.0.0.1:0"));
        auto b = coring::udp_socket::bind(address::parse("127.0.0.1:0"));
        a.connect(b.local_address());
        b.connect(a.local_address());
        CHECK(a.peer_address() == b.local_address());
        for (int i = 0; i < 100; ++i) {
            const std::string msg = "datagram " + std::to_string(i);
            const std::size_t sent = co_await a.send(msg);
            CHECK(sent == msg.size());
            char buf[64];
            const coring::datagram d = co_await b.recv(std::span(buf));
            CHECK(std::string(buf, d.bytes) == msg);
            CHECK(d.from == a.local_address());
            const std::size_t echoed = co_await b.send(std::string_view(buf, d.bytes));
            CHECK(echoed == d.bytes);
            const coring::datagram r = co_await a.recv(std::span(buf));
            CHECK(r.bytes == msg.size());
        }
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("udp - datagram boundaries: truncation to the buffer, empty datagrams", "[net][udp]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto rx = coring::udp_socket::bind(address::parse("127.0.0.1:0"));
        auto tx = coring::udp_socket::open(AF_INET); // bound by the kernel on the first send
        const std::string big(1000, 'b');
        const std::size_t s1 = co_await tx.send_to(big, rx.local_address());
        CHECK(s1 == 1000);
        CHECK(tx.local_address().port() != 0);
        const std::size_t s2 = co_await tx.send_to(std::string_view(), rx.local_address());
        CHECK(s2 == 0);
        const std::size_t s3 = co_await tx.send_to("next", rx.local_address());
        CHECK(s3 == 4);

        char small[10];
        auto [n1, f1] = co_await rx.recv_from(std::span(small));
        CHECK(n1 == sizeof small); // the rest of the datagram is dropped, not delivered later
        // tx was bound to the wildcard address; the datagram came from loopback, on its port.
        CHECK(tx.local_address().to_string() == "0.0.0.0:" + std::to_string(tx.local_address().port()));
        CHECK(f1 == address::parse("127.0.0.1:0").with_port(tx.local_address().port()));
        auto [n2, f2] = co_await rx.recv_from(std::span(small));
        CHECK(n2 == 0);
        CHECK(f2 == f1);
        auto [n3, f3] = co_await rx.recv_from(std::span(small));
        CHECK(std::string(small, n3) == "next");
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("udp - an unreachable connected peer: recv reports ECONNREFUSED naming the socket", "[net][udp]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        // A port nobody receives on: bind one, note it, close it.
        address gone;
        {
            auto tmp = coring::udp_socket::bind(address::parse("127.0.0.1:0"));
            gone = tmp.local_address();
        }
        auto s = coring::udp_socket::bind(address::parse("127.0.0.1:0"));
        s.connect(gone);
        const std::size_t sent = co_await s.send("anyone?");
        CHECK(sent == 7);
        std::string what;
        int code = 0;
        char buf[16];
        try {
            (void)co_await coring::timeout(2s, s.recv(std::span(buf)));
        } catch (const std::system_error& e) {
            what = e.what();
            code = e.code().value();
        }
        INFO(what);
        CHECK(code == ECONNREFUSED);
        CHECK(what.find("recv on " + s.local_address().to_string()) != std::string::npos);
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("udp - recv under a timeout and cancellation, a later datagram is still received", "[net][udp]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto rx = coring::udp_socket::bind(address::parse("127.0.0.1:0"));
        auto tx = coring::udp_socket::bind(address::parse("127.0.0.1:0"));
        char buf[16];
        CHECK_THROWS_AS(co_await coring::timeout(20ms, rx.recv_from(std::span(buf))), coring::timeout_error);

        auto waiting = coring::spawn(rx.recv_from(std::span(buf)));
        co_await coring::sleep(5ms);
        waiting.cancel();
        CHECK_THROWS_AS(co_await waiting, coring::cancelled_error);

        const std::size_t sent = co_await tx.send_to("late", rx.local_address());
        CHECK(sent == 4);
        auto [n, from] = co_await coring::timeout(2s, rx.recv_from(std::span(buf)));
        CHECK(std::string(buf, n) == "late");
        CHECK(from == tx.local_address());
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("udp - errors: address in use, closed socket, send to an impossible address", "[net][udp]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto a = coring::udp_socket::bind(address::parse("127.0.0.1:0"));
        std::string what;
        try {
            (void)coring::udp_socket::bind(a.local_address());
        } catch (const std::system_error& e) {
            what = std::to_string(e.code().value()) + " " + e.what();
        }
        INFO(what);
        CHECK(what.find(std::to_string(EADDRINUSE) + " ") == 0);
        CHECK(what.find("bind " + a.local_address().to_string()) != std::string::npos);

        // An IPv6 destination for an IPv4 socket.
        std::string wrong;
        try {
            (void)co_await a.send_to("x", address::parse("[::1]:9"));
        } catch (const std::system_error& e) {
            wrong = e.what();
        }
        CHECK(wrong.find("send to [::1]:9") != std::string::npos);

        a.close();
        CHECK(a.native_handle() == -1);
        char buf[4];
        CHECK_THROWS_AS(co_await a.send_to("x", address::parse("127.0.0.1:9")), std::logic_error);
        CHECK_THROWS_AS(co_await a.recv_from(std::span(buf)), std::logic_error);
        a.close(); // twice: harmless
    }());
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_udp
