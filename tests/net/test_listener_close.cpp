// Regression tests for issue 10: a listener or UDP socket closed (or destroyed) while an accept() or recv() was in
// flight kept the socket alive in the kernel: the port stayed bound and new clients were still accepted.

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace test_listener_close {

using namespace std::chrono_literals;
using coring::address;
using coring::task;

namespace {

constexpr int accepted = -1;  // the accept returned a connection
constexpr int timed_out = -2; // the operation was still running after the test's deadline

/// What an accept ended with: `accepted`, or the errno of its std::system_error (the message goes to `what`).
template <class Listener>
task<int> accept_outcome(Listener& l, std::string* what) {
    try {
        auto s = co_await l.accept();
        co_return accepted;
    } catch (const std::system_error& e) {
        if (what) *what = e.what();
        co_return e.code().value();
    }
}

/// The outcome of `h`, or `timed_out` when it does not finish within 2 s (it is cancelled then).
task<int> outcome_within(coring::join_handle<int> h) {
    try {
        co_return co_await coring::timeout(2s, std::move(h));
    } catch (const coring::timeout_error&) {
        co_return timed_out;
    }
}

/// The errno a connection attempt to `at` fails with; 0 when it connects.
template <class Stream>
task<int> connect_errno(address at) {
    const coring_test::io_failure f = co_await coring_test::failure_of(Stream::connect(std::move(at)));
    co_return f.code;
}

/// The errno a bind of `at` fails with; 0 when it succeeds (the new socket is closed at once).
template <class Bind>
int bind_errno(Bind bind) {
    try {
        bind();
    } catch (const std::system_error& e) {
        return e.code().value();
    }
    return 0;
}

} // namespace

TEST_CASE("listener close - a pending accept ends with ECANCELED, the port refuses clients and can be bound again",
          "[net][tcp][listener_close]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
        const address at = l.local_address();
        std::string what;
        auto pending = coring::spawn(accept_outcome(l, &what));
        co_await coring::sleep(20ms); // the accept is in the kernel

        l.close();
        CHECK(l.native_handle() == -1);
        // Nobody listens any more, at once: no connection is accepted by the closed listener.
        const int r1 = co_await connect_errno<coring::tcp_stream>(at);
        CHECK(r1 == ECONNREFUSED);
        // The port can be bound again right away (the old socket no longer listens on it).
        CHECK(bind_errno([&] { (void)coring::tcp_listener::bind(at); }) == 0);

        const int r = co_await outcome_within(std::move(pending));
        CHECK(r == ECANCELED);
        INFO(what);
        CHECK_THAT(what, Catch::Contains("accept on") && Catch::Contains("closed"));
        CHECK_THROWS_AS(co_await l.accept(), std::logic_error);
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("listener close - every one of several pending accepts ends, a closed listener closes twice harmlessly",
          "[net][tcp][listener_close]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
        auto a = coring::spawn(accept_outcome(l, nullptr));
        auto b = coring::spawn(accept_outcome(l, nullptr));
        auto c = coring::spawn(accept_outcome(l, nullptr));
        co_await coring::sleep(20ms);
        l.close();
        l.close();
        const int r2 = co_await outcome_within(std::move(a));
        CHECK(r2 == ECANCELED);
        const int r3 = co_await outcome_within(std::move(b));
        CHECK(r3 == ECANCELED);
        const int r4 = co_await outcome_within(std::move(c));
        CHECK(r4 == ECANCELED);
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("listener close - destroying a listener under a pending accept ends it and frees the port",
          "[net][tcp][listener_close]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto l = std::make_unique<coring::tcp_listener>(coring::tcp_listener::bind(address::parse("127.0.0.1:0")));
        const address at = l->local_address();
        auto pending = coring::spawn(accept_outcome(*l, nullptr));
        co_await coring::sleep(20ms);

        l.reset();
        const int r5 = co_await connect_errno<coring::tcp_stream>(at);
        CHECK(r5 == ECONNREFUSED);
        const int r6 = co_await outcome_within(std::move(pending));
        CHECK(r6 == ECANCELED);
        CHECK(bind_errno([&] { (void)coring::tcp_listener::bind(at); }) == 0);
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("listener close - a listener moved under a pending accept keeps serving it, and its close ends it",
          "[net][tcp][listener_close]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
        const address at = l.local_address();
        auto first = coring::spawn(accept_outcome(l, nullptr));
        co_await coring::sleep(20ms);

        std::optional<coring::tcp_listener> moved(std::move(l));
        auto c = co_await coring::tcp_stream::connect(at);
        const int r7 = co_await outcome_within(std::move(first));
        CHECK(r7 == accepted);

        auto second = coring::spawn(accept_outcome(*moved, nullptr));
        co_await coring::sleep(20ms);
        moved.reset();
        const int r8 = co_await outcome_within(std::move(second));
        CHECK(r8 == ECANCELED);
        const int r9 = co_await connect_errno<coring::tcp_stream>(at);
        CHECK(r9 == ECONNREFUSED);
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("listener close - a unix listener closed under a pending accept refuses clients, its name is free again",
          "[net][unix][listener_close]") {
    const int fds = coring_test::open_fds();
    for (const bool abstract : {false, true}) {
        SECTION(abstract ? "abstract name" : "path") {
            coring::run([](bool abstract_name) -> task<> {
                const std::string name = coring_test::unique_socket_name(abstract_name);
                auto l = coring::unix_listener::bind(name);
                const address at = l.local_address();
                auto pending = coring::spawn(accept_outcome(l, nullptr));
                co_await coring::sleep(20ms);

                l.close();
                const int r10 = co_await connect_errno<coring::unix_stream>(at);
                CHECK(r10 == ECONNREFUSED);
                const int r11 = co_await outcome_within(std::move(pending));
                CHECK(r11 == ECANCELED);
                // An abstract name stays taken for as long as the kernel holds the old socket.
                CHECK(bind_errno([&] { (void)coring::unix_listener::bind(name); }) == 0);
                if (!abstract_name) ::unlink(name.c_str());
            }(abstract));
        }
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("listener close - a udp socket closed or destroyed under a pending recv ends it, the port is free again",
          "[net][udp][listener_close]") {
    const int fds = coring_test::open_fds();
    for (const bool destroy : {false, true}) {
        SECTION(destroy ? "destroyed" : "closed") {
            coring::run([](bool destroy_it) -> task<> {
                auto s = std::make_unique<coring::udp_socket>(coring::udp_socket::bind(address::parse("127.0.0.1:0")));
                const address at = s->local_address();
                std::string what;
                auto pending = coring::spawn([](coring::udp_socket& u, std::string& message) -> task<int> {
                    char buf[16];
                    try {
                        (void)co_await u.recv_from(std::span(buf));
                        co_return 0;
                    } catch (const std::system_error& e) {
                        message = e.what();
                        co_return e.code().value();
                    }
                }(*s, what));
                co_await coring::sleep(20ms);

                if (destroy_it) s.reset();
                else s->close();
                const int r12 = co_await outcome_within(std::move(pending));
                CHECK(r12 == ECANCELED);
                INFO(what);
                CHECK_THAT(what, Catch::Contains("closed"));
                // Without SO_REUSEADDR: only free once the kernel let go of the old socket.
                CHECK(bind_errno([&] { (void)coring::udp_socket::bind(at); }) == 0);
            }(destroy));
        }
    }
    CHECK(coring_test::open_fds() == fds);
}

// ---- the descriptor's number is not reused under an operation that names it (review of issue 10) ---------------

// An operation's SQE is prepared when it is awaited but reaches the kernel only at the loop's next io_uring_enter.
// Two tasks that run in the same turn: the first starts a send or an accept, the second closes the socket and opens
// another, which takes the lowest free descriptor number. Closing the descriptor at once let the stale SQE run on the
// new socket: the datagram left through it, the accept took its client.

TEST_CASE("listener close - a send started in the same turn as the close never leaves through a socket opened after",
          "[net][udp][listener_close]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto rx = coring::udp_socket::bind(address::parse("127.0.0.1:0"));
        const address rx_at = rx.local_address();
        std::optional<coring::udp_socket> a(coring::udp_socket::bind(address::parse("127.0.0.1:0")));
        const address a_at = a->local_address();
        std::optional<coring::udp_socket> b;
        address b_at;
        std::string sent;
        auto sender = coring::spawn([](coring::udp_socket& s, address to, std::string& out) -> task<> {
            try {
                const std::size_t n = co_await s.send_to("from A", to);
                out = "sent " + std::to_string(n);
            } catch (const std::system_error& e) {
                out = e.what();
            }
        }(*a, rx_at, sent));
        auto closer = coring::spawn([](std::optional<coring::udp_socket>& first,
                                       std::optional<coring::udp_socket>& second, address& second_at) -> task<> {
            first->close();
            second.emplace(coring::udp_socket::bind(address::parse("127.0.0.1:0")));
            second_at = second->local_address();
            co_return;
        }(a, b, b_at));
        char buf[16];
        auto got = co_await coring::timeout(2s, rx.recv_from(std::span(buf)));
        co_await sender;
        co_await closer;
        INFO("sender: " << sent << "; A " << a_at.to_string() << ", B " << b_at.to_string() << ", from "
                        << got.from.to_string());
        CHECK(std::string(buf, got.bytes) == "from A");
        CHECK(got.from == a_at);
        CHECK_FALSE(got.from == b_at);
        // B works, through its own port.
        const std::size_t n = co_await b->send_to("from B", rx_at);
        CHECK(n == 6);
        auto got_b = co_await coring::timeout(2s, rx.recv_from(std::span(buf)));
        CHECK(got_b.from == b_at);
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("listener close - an accept started in the same turn as the close never takes a later listener's client",
          "[net][tcp][listener_close]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        std::optional<coring::tcp_listener> a(coring::tcp_listener::bind(address::parse("127.0.0.1:0")));
        std::optional<coring::tcp_listener> b;
        int client = -1;
        std::string what;
        auto pending = coring::spawn(accept_outcome(*a, &what));
        auto closer = coring::spawn([](std::optional<coring::tcp_listener>& first,
                                       std::optional<coring::tcp_listener>& second, int& c) -> task<> {
            first->close();
            second.emplace(coring::tcp_listener::bind(address::parse("127.0.0.1:0")));
            // A client of B, connected at once (the loopback handshake completes in the kernel, into B's backlog).
            c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            const address at = second->local_address();
            (void)::connect(c, at.data(), at.size());
            co_return;
        }(a, b, client));
        const int r = co_await outcome_within(std::move(pending));
        co_await closer;
        INFO(what);
        CHECK(r == ECANCELED);
        // B's client waits in B's backlog, not taken by the closed listener's accept.
        bool b_accepted = false;
        try {
            auto s = co_await coring::timeout(1s, b->accept());
            b_accepted = true;
        } catch (const coring::timeout_error&) {}
        CHECK(b_accepted);
        ::close(client);
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("listener close - with operations in flight the descriptor is closed by the last of them, not under them",
          "[net][udp][tcp][listener_close]") {
    const int fds = coring_test::open_fds();
    // An accept submitted per call: the standing multishot accept is stopped synchronously by close() where the
    // kernel can (Linux 6.0), and then nothing is left in flight to hand the descriptor to.
    {
        coring::loop_options plain_accepts;
        plain_accepts.multishot_accept = false;
        coring::event_loop loop(plain_accepts);
        loop.run([]() -> task<> {
            auto u = coring::udp_socket::bind(address::parse("127.0.0.1:0"));
            auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
            const int ufd = u.native_handle();
            const int lfd = l.native_handle();
            auto r1 = coring::spawn([](coring::udp_socket& s) -> task<int> {
                char buf[8];
                try {
                    (void)co_await s.recv_from(std::span(buf));
                    co_return 0;
                } catch (const std::system_error& e) {
                    co_return e.code().value();
                }
            }(u));
            auto r2 = coring::spawn(accept_outcome(l, nullptr));
            co_await coring::sleep(20ms);
            u.close();
            l.close();
            CHECK(u.native_handle() == -1);
            CHECK(l.native_handle() == -1);
            // Still open (held for the cancelled operations), so not reusable by another open yet.
            CHECK(::fcntl(ufd, F_GETFD) != -1);
            CHECK(::fcntl(lfd, F_GETFD) != -1);
            const int e1 = co_await outcome_within(std::move(r1));
            const int e2 = co_await outcome_within(std::move(r2));
            CHECK(e1 == ECANCELED);
            CHECK(e2 == ECANCELED);
            // Closed once they have ended.
            CHECK(::fcntl(ufd, F_GETFD) == -1);
            CHECK(::fcntl(lfd, F_GETFD) == -1);
        }());
    }
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_listener_close
