#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace test_when_any {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::make_socket_pair;
using coring_test::socket_pair;

struct probe {
    bool started = false; // reached its sleep
    bool finished = false;
    bool cancelled = false;
};

task<int> watched(std::chrono::milliseconds d, int v, probe& p) {
    try {
        p.started = true;
        co_await coring::sleep(d);
    } catch (const coring::cancelled_error&) {
        p.cancelled = true;
        throw;
    }
    p.finished = true;
    co_return v;
}

task<> fail_after(std::chrono::milliseconds d) {
    co_await coring::sleep(d);
    throw std::runtime_error("first and failed");
}

int global = 0;

} // namespace

TEST_CASE("when_any - the first to finish wins, the others are cancelled and finished before it returns",
          "[when_any]") {
    coring::run([]() -> task<> {
        probe a, b, c;
        coring_test::stopwatch sw;
        auto r = co_await coring::when_any(watched(10s, 1, a), watched(5ms, 2, b), watched(10s, 3, c));
        CHECK(r.index() == 1);
        CHECK(std::get<1>(r) == 2);
        CHECK(b.finished);
        CHECK(a.cancelled); // drained: their cancellation handlers have run
        CHECK(c.cancelled);
        CHECK(sw.seconds() < 1.0);
    }());
}

TEST_CASE("when_any - a winner that threw is rethrown after the others finished", "[when_any]") {
    coring::run([]() -> task<> {
        probe a;
        CHECK_THROWS_WITH(co_await coring::when_any(watched(10s, 1, a), fail_after(2ms)), "first and failed");
        CHECK(a.cancelled);
    }());
}

TEST_CASE("when_any - void, references and mixed awaitables", "[when_any]") {
    coring::run([]() -> task<> {
        auto r = co_await coring::when_any(coring::sleep(1ms), coring::sleep(10s));
        STATIC_REQUIRE(std::is_same_v<decltype(r), std::variant<std::monostate, std::monostate>>);
        CHECK(r.index() == 0);
        auto ref = co_await coring::when_any([]() -> task<int&> { co_return global; }(), coring::sleep(10s));
        REQUIRE(ref.index() == 0);
        CHECK(&std::get<0>(ref).get() == &global);
        // An operation: a read of a byte already sent.
        socket_pair p = make_socket_pair();
        REQUIRE(::write(p.w.native_handle(), "r", 1) == 1);
        char buf[4] = {};
        auto read = co_await coring::when_any(p.r.read(std::span(buf)), coring::sleep(10s));
        CHECK(read.index() == 0);
        CHECK(std::get<0>(read) == 1);
        CHECK(buf[0] == 'r');
    }());
}

TEST_CASE("when_any - the vector form yields the winner's index and result", "[when_any]") {
    coring::run([]() -> task<> {
        std::vector<task<int>> ts;
        probe ps[5];
        // 4010, 3010, 2010, 1010 and 10 ms: the losers are still asleep when the winner ends, unless a turn takes a
        // second (with 50, 40, 30, 20 and 10 ms, a turn of over 10 ms in a QEMU guest woke two at once, and the
        // second finished instead of being cancelled).
        for (int i = 0; i < 5; ++i) ts.push_back(watched(std::chrono::milliseconds((4 - i) * 1000 + 10), i, ps[i]));
        auto [index, value] = co_await coring::when_any(std::move(ts));
        CHECK(index == 4);
        CHECK(value == 4);
        for (int i = 0; i < 4; ++i) CHECK(ps[i].cancelled);
        std::vector<coring::sleep_awaitable> sleeps;
        sleeps.push_back(coring::sleep(10s));
        sleeps.push_back(coring::sleep(1ms));
        const std::size_t which = co_await coring::when_any(std::move(sleeps));
        CHECK(which == 1);
        std::vector<task<int>> none;
        CHECK_THROWS_AS(coring::when_any(std::move(none)), std::invalid_argument);
    }());
}

TEST_CASE("when_any - cancelling the caller cancels every child", "[when_any][cancel]") {
    coring::run([]() -> task<> {
        probe a, b;
        auto h = coring::spawn(coring::when_any(watched(10s, 1, a), watched(10s, 2, b)));
        // Cancelled once both children wait (one cancelled before it ever ran never reaches its handler; under an
        // emulator, 2 ms were not always enough for them to start).
        while (!a.started || !b.started) co_await coring::sleep(1ms);
        h.cancel();
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);
        CHECK(a.cancelled);
        CHECK(b.cancelled);
    }());
}

TEST_CASE("when_any - with a timeout as one of the racers", "[when_any][timeout]") {
    coring::run([]() -> task<> {
        probe a;
        auto r = co_await coring::when_any(watched(10s, 1, a), coring::sleep(3ms));
        CHECK(r.index() == 1);
        CHECK(a.cancelled);
    }());
}

} // namespace test_when_any
