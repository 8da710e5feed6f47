#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <span>
#include <vector>

namespace test_yield_now {

using coring::task;

TEST_CASE("yield_now - every ready task runs once before the yielder continues", "[yield]") {
    coring::run([]() -> task<> {
        std::vector<int> trace;
        auto worker = [](int id, std::vector<int>& t) -> task<> {
            for (int round = 0; round < 3; ++round) {
                t.push_back(id);
                co_await coring::yield_now();
            }
        };
        co_await coring::gather(worker(1, trace), worker(2, trace), worker(3, trace));
        CHECK(trace == std::vector<int>{1, 2, 3, 1, 2, 3, 1, 2, 3});
    }());
}

TEST_CASE("yield_now - a busy yielder does not starve I/O completions or timers", "[yield]") {
    coring::run([]() -> task<> {
        bool stop = false;
        auto spinner = coring::spawn([](bool& s) -> task<long> {
            long spins = 0;
            while (!s) {
                co_await coring::yield_now();
                ++spins;
            }
            co_return spins;
        }(stop));
        // An I/O completion: a read whose byte another task sends a turn later. On io_uring its CQE must be reaped
        // (and on epoll the readiness polled for) although the spinner never lets the ready queue run empty.
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
        coring::unix_stream r(fds[0]), w(fds[1]);
        auto sender = coring::spawn([](coring::unix_stream& to) -> task<> {
            co_await coring::yield_now();
            REQUIRE(::write(to.native_handle(), "y", 1) == 1);
        }(w));
        char c = 0;
        const std::size_t n = co_await r.read(std::span(&c, 1));
        CHECK(n == 1);
        CHECK(c == 'y');
        co_await sender;
        co_await coring::sleep(std::chrono::milliseconds(5));
        stop = true;
        const long spins = co_await spinner;
        CHECK(spins > 0);
    }());
}

TEST_CASE("yield_now - is a cancellation point", "[yield][cancel]") {
    coring::run([]() -> task<> {
        auto h = coring::spawn([]() -> task<> {
            for (;;) co_await coring::yield_now();
        }());
        co_await coring::yield_now();
        h.cancel();
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);
    }());
}

TEST_CASE("yield_now - outside a loop is a logic error", "[yield]") {
    // A task driven by hand, without any loop: awaiting yield_now has no loop to go back to.
    auto t = []() -> task<> { co_await coring::yield_now(); }();
    auto h = t.handle();
    h.resume();
    CHECK(t.done());
    CHECK_THROWS_AS(h.promise().take(), std::logic_error);
}

} // namespace test_yield_now
