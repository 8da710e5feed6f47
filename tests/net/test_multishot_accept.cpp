// A listener's standing multishot accept (loop_options::multishot_accept): one submission for a whole accept loop,
// connections accepted while the server is busy returned without suspending, in the order they came, none lost to a
// cancelled accept or left open by a close; and the accept-per-call path it replaces, with the option off.

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

namespace test_multishot_accept {

using namespace std::chrono_literals;
using coring::address;
using coring::task;

namespace {

/// A blocking IPv4 client connected to `at` (the handshake completes in the kernel, into the listener's backlog).
int connect_to(const address& at) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (::connect(fd, at.data(), at.size()) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

/// The local port of a client socket.
std::uint16_t local_port(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
    return ntohs(a.sin_port);
}

/// What a blocking client reads within 2 s: the bytes, "" at the end of the stream, "(reset)" or "(nothing)".
std::string client_read(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) return "(nothing)";
    char buf[64];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) return "(reset)";
    return std::string(buf, static_cast<std::size_t>(n));
}

coring::loop_options accept_mode(bool multishot) {
    coring::loop_options o;
    o.multishot_accept = multishot;
    return o;
}

} // namespace

TEST_CASE("multishot accept - a backlog of connections is taken by one submission and returned in order with their "
          "peers' addresses",
          "[net][tcp][multishot_accept][io_uring-only]") {
    const int fds = coring_test::open_fds();
    constexpr int clients = 20;
    std::uint64_t sqes_multishot = 0, sqes_plain = 0;
    for (const bool multishot : {true, false}) {
        INFO("multishot_accept = " << multishot);
        coring::event_loop loop(accept_mode(multishot));
        std::uint64_t& sqes = multishot ? sqes_multishot : sqes_plain;
        loop.run([](int n, std::uint64_t& sqes) -> task<> {
            auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
            std::vector<int> conns;
            for (int i = 0; i < n; ++i) {
                conns.push_back(connect_to(l.local_address()));
                REQUIRE(conns.back() >= 0);
            }
            auto& loop = coring::event_loop::current();
            const std::uint64_t before = loop.stats().sqes;
            for (int i = 0; i < n; ++i) {
                coring::tcp_stream s = co_await l.accept();
                // The kernel's backlog is first in, first out, and the stream learns its peer from the socket.
                CHECK(s.peer_address().port() == local_port(conns[static_cast<std::size_t>(i)]));
                CHECK(s.peer_address().to_string().rfind("127.0.0.1:", 0) == 0);
                co_await s.write_all(std::to_string(i));
            }
            sqes = loop.stats().sqes - before;
            for (int i = 0; i < n; ++i) {
                CHECK(client_read(conns[static_cast<std::size_t>(i)]) == std::to_string(i));
                ::close(conns[static_cast<std::size_t>(i)]);
            }
        }(clients, sqes));
    }
    INFO("SQEs for " << clients << " accepts and writes: multishot " << sqes_multishot << ", plain " << sqes_plain);
    // The writes take one SQE each either way; the accepts one in all, against one each.
    CHECK(sqes_multishot <= clients + 2);
    CHECK(sqes_plain >= 2 * clients);
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("multishot accept - an accept cancelled while it waits loses no connection: the next one returns it",
          "[net][tcp][multishot_accept]") {
    const int fds = coring_test::open_fds();
    const bool multishot = GENERATE(true, false);
    INFO("multishot_accept = " << multishot);
    {
        coring::event_loop loop(accept_mode(multishot));
        loop.run([]() -> task<> {
            auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
            for (int round = 0; round < 3; ++round) {
                bool timed_out = false;
                try {
                    (void)co_await coring::timeout(10ms, l.accept());
                } catch (const coring::timeout_error&) {
                    timed_out = true;
                }
                CHECK(timed_out);
                const int c = connect_to(l.local_address());
                REQUIRE(c >= 0);
                // With the multishot accept still armed the connection is taken at once, with nobody waiting for it.
                co_await coring::sleep(5ms);
                coring::tcp_stream s = co_await coring::timeout(2s, l.accept());
                CHECK(s.peer_address().port() == local_port(c));
                co_await s.write_all("hello");
                CHECK(client_read(c) == "hello");
                ::close(c);
            }
        }());
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("multishot accept - closing the listener resets the connections nobody took and ends a waiting accept",
          "[net][tcp][multishot_accept][listener_close]") {
    const int fds = coring_test::open_fds();
    const bool multishot = GENERATE(true, false);
    INFO("multishot_accept = " << multishot);
    {
        coring::event_loop loop(accept_mode(multishot));
        loop.run([]() -> task<> {
            auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
            std::vector<int> conns;
            for (int i = 0; i < 4; ++i) conns.push_back(connect_to(l.local_address()));
            coring::tcp_stream first = co_await l.accept(); // the multishot accept takes all four
            co_await coring::sleep(5ms);
            // A second listener's accept waits while the first one closes with three connections nobody asked for.
            auto l2 = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
            auto waiting = coring::spawn([](coring::tcp_listener& l) -> task<int> {
                try {
                    (void)co_await l.accept();
                    co_return 0;
                } catch (const std::system_error& e) {
                    co_return e.code().value();
                }
            }(l2));
            co_await coring::sleep(5ms);
            l.close();
            l2.close();
            const int ended = co_await coring::timeout(2s, std::move(waiting));
            CHECK(ended == ECANCELED);
            // Each client not taken sees its connection end (reset, or the end of the stream), never silence.
            for (std::size_t i = 1; i < conns.size(); ++i) {
                const std::string got = client_read(conns[i]);
                INFO("client " << i << " read " << got);
                CHECK((got == "(reset)" || got.empty()));
            }
            co_await first.write_all("still served");
            CHECK(client_read(conns[0]) == "still served");
            for (const int c : conns) ::close(c);
        }());
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("multishot accept - a burst beyond the queue's limit is served whole and in order",
          "[net][tcp][multishot_accept]") {
    const int fds = coring_test::open_fds();
    const bool multishot = GENERATE(true, false);
    INFO("multishot_accept = " << multishot);
    {
        coring::event_loop loop(accept_mode(multishot));
        loop.run([]() -> task<> {
            auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
            // Two bursts: the first is in the backlog before any accept, the second arrives while the first is served.
            std::vector<int> conns;
            for (int i = 0; i < 150; ++i) conns.push_back(connect_to(l.local_address()));
            for (std::size_t i = 0; i < 300; ++i) {
                coring::tcp_stream s = co_await coring::timeout(2s, l.accept());
                CHECK(s.peer_address().port() == local_port(conns[i]));
                if (i == 20)
                    for (int k = 0; k < 150; ++k) conns.push_back(connect_to(l.local_address()));
                co_await coring::sleep(0ms); // let the loop turn, so the standing accept takes what arrived meanwhile
            }
            for (const int c : conns) ::close(c);
        }());
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("multishot accept - a listener moved, or destroyed, under a waiting accept", "[net][tcp][multishot_accept]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto first = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
        const address at = first.local_address();
        auto waiting = coring::spawn([](coring::tcp_listener& l) -> task<std::uint16_t> {
            coring::tcp_stream s = co_await l.accept();
            co_return s.peer_address().port();
        }(first));
        co_await coring::sleep(5ms);
        coring::tcp_listener moved = std::move(first); // the accept follows the listener
        const int c = connect_to(at);
        const std::uint16_t port = co_await coring::timeout(2s, std::move(waiting));
        CHECK(port == local_port(c));
        ::close(c);
        { coring::tcp_listener gone = std::move(moved); } // destroyed: the port is free again
        auto again = coring::tcp_listener::bind(at);
        CHECK(again.local_address() == at);
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("multishot accept - connections taken in one run are returned by the next run on another loop",
          "[net][tcp][multishot_accept]") {
    const int fds = coring_test::open_fds();
    {
        auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
        std::vector<int> conns;
        coring::run([](coring::tcp_listener& l, std::vector<int>& conns) -> task<> {
            conns.push_back(connect_to(l.local_address()));
            coring::tcp_stream s = co_await l.accept();
            CHECK(s.peer_address().port() == local_port(conns[0]));
            // Two more while nobody accepts: the standing accept takes them before this run ends.
            conns.push_back(connect_to(l.local_address()));
            conns.push_back(connect_to(l.local_address()));
            co_await coring::sleep(10ms);
        }(l, conns));
        coring::run([](coring::tcp_listener& l, std::vector<int>& conns) -> task<> {
            for (std::size_t i = 1; i < 3; ++i) {
                coring::tcp_stream s = co_await coring::timeout(2s, l.accept());
                CHECK(s.peer_address().port() == local_port(conns[i]));
            }
        }(l, conns));
        for (const int c : conns) ::close(c);
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("multishot accept - closing a listener nobody waits on leaves a copy of its socket listening (pre-fork)",
          "[net][tcp][multishot_accept][listener_close]") {
    const int fds = coring_test::open_fds();
    int copy = -1;
    address at;
    coring::run([](int& copy, address& at) -> task<> {
        auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
        at = l.local_address();
        const int c = connect_to(at);
        { coring::tcp_stream s = co_await l.accept(); } // the standing accept stays armed, with nobody waiting
        ::close(c);
        const int lfd = l.native_handle();
        copy = ::fcntl(lfd, F_DUPFD_CLOEXEC, 0); // as a forked sibling would hold it
        l.close();
        // Stopped in the kernel there and then (IORING_REGISTER_SYNC_CANCEL, Linux 6.0; epoll has nothing in
        // flight): closed at once. Before 6.0 the standing accept closes it when its cancellation completes.
        if (!coring::detail::kernel_older_than(6, 0)) CHECK(::fcntl(lfd, F_GETFD) == -1);
        co_await coring::sleep(5ms);
    }(copy, at));
    REQUIRE(copy >= 0);
    // The copy still listens: a client connects and a blocking accept on it takes the connection.
    const int c = connect_to(at);
    REQUIRE(c >= 0);
    pollfd p{copy, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 2000) == 1);
    const int conn = ::accept4(copy, nullptr, nullptr, SOCK_CLOEXEC);
    CHECK(conn >= 0);
    if (conn >= 0) ::close(conn);
    ::close(c);
    ::close(copy);
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_multishot_accept
