#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/sync.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <utility>
#include <vector>

namespace test_mutex {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::settle;

/// Takes the lock, records `id`, holds the lock across a yield, then unlocks.
task<> locker(coring::mutex& m, int id, std::vector<int>& order) {
    auto g = co_await m.lock();
    order.push_back(id);
    co_await coring::yield_now();
}

/// Whether a waiter got the lock and when it let go.
struct probe {
    bool got = false;
    bool cancelled = false;
    bool released = false;
};

/// Takes the lock and holds it until cancelled at its next wait.
task<> holder(coring::mutex& m, probe& p) {
    try {
        auto g = co_await m.lock();
        p.got = true;
        try {
            co_await coring::sleep(10s);
        } catch (const coring::cancelled_error&) {
            p.released = true; // the guard unlocks as the exception leaves this scope
            throw;
        }
    } catch (const coring::cancelled_error&) {
        p.cancelled = true;
        throw;
    }
}

/// Meets its cancellation in a sleep, swallows it, then tries both mutexes.
task<> lock_after_cancel(coring::mutex& busy, coring::mutex& free, bool& threw, bool& took) {
    try {
        co_await coring::sleep(10s);
    } catch (const coring::cancelled_error&) {}
    // Level-triggered: the task stays cancelled, so it must not wait for the busy mutex...
    try {
        auto g = co_await busy.lock();
    } catch (const coring::cancelled_error&) {
        threw = true;
    }
    // ...but a free one needs no waiting, so it simply takes it.
    auto g = co_await free.lock();
    took = g.owns_lock();
}

using coring_test::fail_soon;

} // namespace

TEST_CASE("mutex - lock on a free mutex returns at once with a guard that unlocks", "[sync][mutex]") {
    coring::run([]() -> task<> {
        coring::mutex m;
        CHECK_FALSE(m.locked());
        {
            auto g = co_await m.lock();
            CHECK(g.owns_lock());
            CHECK(static_cast<bool>(g));
            CHECK(m.locked());
        }
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex - try_lock takes a free mutex and returns an empty guard when it is taken", "[sync][mutex]") {
    coring::mutex m;
    if (auto g = m.try_lock()) {
        CHECK(m.locked());
        auto second = m.try_lock();
        CHECK_FALSE(second);
        CHECK_FALSE(second.owns_lock());
    } else {
        FAIL("try_lock on a free mutex failed");
    }
    CHECK_FALSE(m.locked());
}

TEST_CASE("mutex - guard unlock, move, move assignment and release", "[sync][mutex]") {
    coring::mutex a, b;
    auto ga = a.try_lock();
    REQUIRE(ga);
    ga.unlock();
    CHECK_FALSE(ga.owns_lock());
    CHECK_FALSE(a.locked());
    ga.unlock(); // an empty guard: nothing happens

    auto g1 = a.try_lock();
    coring::mutex::guard g2(std::move(g1));
    CHECK_FALSE(g1.owns_lock());
    CHECK(g2.owns_lock());
    CHECK(a.locked());

    auto gb = b.try_lock();
    gb = std::move(g2); // unlocks b, takes over a
    CHECK_FALSE(b.locked());
    CHECK(a.locked());
    CHECK(gb.owns_lock());

    coring::mutex* raw = gb.release();
    CHECK(raw == &a);
    CHECK_FALSE(gb.owns_lock());
    CHECK(a.locked());
    a.unlock();
    CHECK_FALSE(a.locked());
}

TEST_CASE("mutex - unlock of a mutex that is not locked throws std::logic_error", "[sync][mutex]") {
    coring::mutex m;
    CHECK_THROWS_AS(m.unlock(), std::logic_error);
}

TEST_CASE("mutex - unlock hands the lock to the first waiter in order", "[sync][mutex]") {
    coring::run([]() -> task<> {
        coring::mutex m;
        std::vector<int> order;
        auto held = m.try_lock();
        std::vector<coring::join_handle<void>> hs;
        for (int i = 0; i < 5; ++i) hs.push_back(coring::spawn(locker(m, i, order)));
        co_await settle();
        CHECK(order.empty()); // all waiting
        held.unlock();
        // Handed over, not freed: the first waiter owns it before it has even run.
        CHECK(m.locked());
        for (auto& h : hs) co_await h;
        CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex - no barging - try_lock fails and a new locker queues while waiters wait", "[sync][mutex]") {
    coring::run([]() -> task<> {
        coring::mutex m;
        std::vector<int> order;
        auto held = m.try_lock();
        auto first = coring::spawn(locker(m, 1, order));
        co_await settle();
        held.unlock(); // handed to the waiter, which has not run yet
        auto stolen = m.try_lock();
        CHECK_FALSE(stolen);
        auto second = coring::spawn(locker(m, 2, order));
        co_await first;
        co_await second;
        CHECK(order == std::vector<int>{1, 2});
    }());
}

TEST_CASE("mutex - a cancelled waiter leaves the queue and the next waiter gets the lock", "[sync][mutex][cancel]") {
    coring::run([]() -> task<> {
        coring::mutex m;
        std::vector<int> order;
        auto held = m.try_lock();
        auto a = coring::spawn(locker(m, 1, order));
        auto b = coring::spawn(locker(m, 2, order));
        auto c = coring::spawn(locker(m, 3, order));
        co_await settle();
        CHECK(b.cancel());
        co_await settle();
        CHECK(b.done()); // left the queue at once, without the lock being released
        CHECK(m.locked());
        CHECK_THROWS_AS(co_await b, coring::cancelled_error);
        held.unlock();
        co_await a;
        co_await c;
        CHECK(order == std::vector<int>{1, 3});
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex - a waiter cancelled right after being handed the lock keeps it and the next waiter still progresses",
          "[sync][mutex][cancel]") {
    coring::run([]() -> task<> {
        coring::mutex m;
        probe pa, pb;
        auto held = m.try_lock();
        auto a = coring::spawn(holder(m, pa));
        auto b = coring::spawn(holder(m, pb));
        co_await settle();
        held.unlock(); // a owns the lock now, but has not run
        a.cancel();    // too late to take it away: a gets the lock, then meets the cancellation at its next wait
        CHECK_THROWS_AS(co_await a, coring::cancelled_error);
        CHECK(pa.got);
        CHECK(pa.released);
        co_await settle();
        CHECK(pb.got); // the lock went on to b: no lost wake-up
        b.cancel();
        CHECK_THROWS_AS(co_await b, coring::cancelled_error);
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex - an already cancelled task does not wait for a locked mutex but takes a free one",
          "[sync][mutex][cancel]") {
    coring::run([]() -> task<> {
        coring::mutex busy, free;
        bool threw = false, took = false;
        auto held = busy.try_lock();
        auto h = coring::spawn(lock_after_cancel(busy, free, threw, took));
        co_await settle();
        h.cancel();
        co_await h; // it swallowed the cancellation and finished normally
        CHECK(threw);
        CHECK(took);
        CHECK_FALSE(free.locked());
        held.unlock();
        CHECK_FALSE(busy.locked()); // it never queued
    }());
}

TEST_CASE("mutex - a gather failure cancels a child waiting for the lock", "[sync][mutex][cancel]") {
    coring::run([]() -> task<> {
        coring::mutex m;
        std::vector<int> order;
        auto held = m.try_lock();
        CHECK_THROWS_AS(co_await coring::gather(locker(m, 1, order), fail_soon()), std::runtime_error);
        CHECK(order.empty());
        held.unlock();
        CHECK_FALSE(m.locked()); // the cancelled child is no longer in line
    }());
}

TEST_CASE("mutex - lock is an awaitable that spawn and gather accept", "[sync][mutex]") {
    coring::run([]() -> task<> {
        coring::mutex m;
        auto held = m.try_lock();
        auto h = coring::spawn(m.lock());
        co_await settle();
        CHECK_FALSE(h.done());
        held.unlock();
        coring::mutex::guard g = co_await std::move(h);
        CHECK(g.owns_lock());
        g.unlock();
        auto [g1] = co_await coring::gather(m.lock());
        CHECK(g1.owns_lock());
    }());
}

TEST_CASE("mutex - an awaiter destroyed while waiting leaves the queue", "[sync][mutex]") {
    coring::run([]() -> task<> {
        coring::mutex m;
        std::vector<int> order;
        auto held = m.try_lock();
        {
            // Started by hand and destroyed while suspended in lock(): not something coring does, but the wait list
            // must not keep a dangling node.
            task<> t = locker(m, 1, order);
            t.handle().resume();
            CHECK_FALSE(t.done());
        }
        held.unlock();
        CHECK_FALSE(m.locked());
        CHECK(order.empty());
        co_return;
    }());
}

TEST_CASE("mutex - a waiter of a destroyed mutex stays suspended until cancelled", "[sync][mutex][cancel]") {
    coring::run([]() -> task<> {
        std::vector<int> order;
        coring::join_handle<void> h;
        {
            coring::mutex m;
            auto g = m.try_lock();
            h = coring::spawn(locker(m, 1, order));
            co_await settle();
            (void)g.release(); // leave it locked: nothing is handed to the waiter
        }
        co_await settle();
        CHECK_FALSE(h.done());
        h.cancel();
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);
        CHECK(order.empty());
    }());
}

TEST_CASE("mutex - many tasks increment a counter under the lock without losing updates", "[sync][mutex]") {
    coring::run([]() -> task<> {
        coring::mutex m;
        int counter = 0, inside = 0, overlap = 0;
        std::vector<task<>> ts;
        for (int i = 0; i < 50; ++i)
            ts.push_back([](coring::mutex& mx, int& c, int& in, int& ov) -> task<> {
                for (int k = 0; k < 20; ++k) {
                    auto g = co_await mx.lock();
                    if (++in != 1) ++ov;
                    const int seen = c;
                    co_await coring::yield_now(); // everyone else runs while this one holds the lock
                    c = seen + 1;
                    --in;
                }
            }(m, counter, inside, overlap));
        co_await coring::gather(std::move(ts));
        CHECK(counter == 1000);
        CHECK(overlap == 0);
        CHECK_FALSE(m.locked());
    }());
}

} // namespace test_mutex
