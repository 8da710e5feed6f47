#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/sync.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <utility>
#include <vector>

namespace test_event {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::settle;

/// Waits for the event and records `id`.
task<> waiter(coring::event& e, int id, std::vector<int>& order) {
    co_await e.wait();
    order.push_back(id);
}

/// Waits for the event, records that it returned, then waits again elsewhere (where a cancellation shows up).
task<> woken_then_sleeps(coring::event& e, bool& returned) {
    co_await e.wait();
    returned = true;
    co_await coring::sleep(10s);
}

using coring_test::fail_soon;

/// Meets its cancellation in a sleep, swallows it, then waits on both events.
task<> wait_after_cancel(coring::event& cleared, coring::event& set, bool& threw, bool& passed) {
    try {
        co_await coring::sleep(10s);
    } catch (const coring::cancelled_error&) {}
    try {
        co_await cleared.wait();
    } catch (const coring::cancelled_error&) {
        threw = true;
    }
    co_await set.wait();
    passed = true;
}

} // namespace

TEST_CASE("event - starts cleared and set and clear change is_set", "[sync][event]") {
    coring::event e;
    CHECK_FALSE(e.is_set());
    e.set();
    CHECK(e.is_set());
    e.set(); // idempotent
    CHECK(e.is_set());
    e.clear();
    CHECK_FALSE(e.is_set());
    coring::event on(true);
    CHECK(on.is_set());
}

TEST_CASE("event - wait returns at once when the event is set", "[sync][event]") {
    coring::run([]() -> task<> {
        coring::event e(true);
        co_await e.wait();
        co_await e.wait();
        CHECK(e.is_set());
    }());
}

TEST_CASE("event - set wakes every waiter in the order they came", "[sync][event]") {
    coring::run([]() -> task<> {
        coring::event e;
        std::vector<int> order;
        std::vector<coring::join_handle<void>> hs;
        for (int i = 0; i < 10; ++i) hs.push_back(coring::spawn(waiter(e, i, order)));
        co_await settle();
        CHECK(order.empty());
        e.set();
        CHECK(order.empty()); // queued, not resumed inline
        for (auto& h : hs) co_await h;
        CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    }());
}

TEST_CASE("event - waiters woken by set return even if the event is cleared before they run", "[sync][event]") {
    coring::run([]() -> task<> {
        coring::event e;
        std::vector<int> order;
        auto a = coring::spawn(waiter(e, 1, order));
        auto b = coring::spawn(waiter(e, 2, order));
        co_await settle();
        e.set();
        e.clear();
        co_await a;
        co_await b;
        CHECK(order == std::vector<int>{1, 2});
        // After the clear, a new waiter waits for the next set.
        auto c = coring::spawn(waiter(e, 3, order));
        co_await settle();
        CHECK(order.size() == 2);
        e.set();
        co_await c;
        CHECK(order == std::vector<int>{1, 2, 3});
    }());
}

TEST_CASE("event - a cancelled waiter leaves the wait list and the others are still woken", "[sync][event][cancel]") {
    coring::run([]() -> task<> {
        coring::event e;
        std::vector<int> order;
        auto a = coring::spawn(waiter(e, 1, order));
        auto b = coring::spawn(waiter(e, 2, order));
        auto c = coring::spawn(waiter(e, 3, order));
        co_await settle();
        b.cancel();
        CHECK_THROWS_AS(co_await b, coring::cancelled_error);
        e.set();
        co_await a;
        co_await c;
        CHECK(order == std::vector<int>{1, 3});
    }());
}

TEST_CASE("event - a waiter cancelled right after set still returns from wait", "[sync][event][cancel]") {
    coring::run([]() -> task<> {
        coring::event e;
        bool returned_a = false, returned_b = false;
        auto a = coring::spawn(woken_then_sleeps(e, returned_a));
        auto b = coring::spawn(woken_then_sleeps(e, returned_b));
        co_await settle();
        e.set();
        a.cancel(); // after the wake-up: wait() returns, the cancellation hits the sleep after it
        CHECK_THROWS_AS(co_await a, coring::cancelled_error);
        CHECK(returned_a);
        co_await settle();
        CHECK(returned_b);
        b.cancel();
        CHECK_THROWS_AS(co_await b, coring::cancelled_error);
    }());
}

TEST_CASE("event - an already cancelled task does not wait on a cleared event but passes a set one",
          "[sync][event][cancel]") {
    coring::run([]() -> task<> {
        coring::event cleared, set(true);
        bool threw = false, passed = false;
        auto h = coring::spawn(wait_after_cancel(cleared, set, threw, passed));
        co_await settle();
        h.cancel();
        co_await h;
        CHECK(threw);
        CHECK(passed);
    }());
}

TEST_CASE("event - a gather failure cancels a child waiting for the event", "[sync][event][cancel]") {
    coring::run([]() -> task<> {
        coring::event e;
        std::vector<int> order;
        CHECK_THROWS_AS(co_await coring::gather(waiter(e, 1, order), fail_soon()), std::runtime_error);
        e.set();
        co_await settle();
        CHECK(order.empty());
    }());
}

TEST_CASE("event - wait is an awaitable that spawn and gather accept", "[sync][event]") {
    coring::run([]() -> task<> {
        coring::event e;
        auto h = coring::spawn(e.wait());
        co_await settle();
        CHECK_FALSE(h.done());
        e.set();
        co_await h;
        co_await coring::gather(e.wait(), e.wait());
        CHECK(e.is_set());
    }());
}

TEST_CASE("event - an awaiter destroyed while waiting leaves the wait list", "[sync][event]") {
    coring::run([]() -> task<> {
        coring::event e;
        std::vector<int> order;
        {
            task<> t = waiter(e, 1, order);
            t.handle().resume(); // started by hand, destroyed while suspended in wait()
            CHECK_FALSE(t.done());
        }
        e.set(); // must not touch the destroyed frame
        co_await settle();
        CHECK(order.empty());
    }());
}

} // namespace test_event
