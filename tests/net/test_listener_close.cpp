// Regression tests for issue 10: a listener or UDP socket closed (or destroyed) while an accept() or recv() was in
// flight kept the socket alive in the kernel: the port stayed bound and new clients were still accepted.

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

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

TEST_CASE("listener close - a pending accept ends with ECANCELED; the port refuses clients and can be bound again",
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

TEST_CASE("listener close - every one of several pending accepts ends; a closed listener closes twice harmlessly",
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

TEST_CASE("listener close - a unix listener closed under a pending accept refuses clients; its name is free again",
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

TEST_CASE("listener close - a udp socket closed or destroyed under a pending recv ends it; the port is free again",
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
