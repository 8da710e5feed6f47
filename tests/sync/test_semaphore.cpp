#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/sync.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

namespace test_semaphore {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::settle;

/// Acquires, records `id`, and keeps the permit (the test releases).
task<> acquirer(coring::semaphore& s, int id, std::vector<int>& order) {
    co_await s.acquire();
    order.push_back(id);
}

/// Gives a permit back when it goes out of scope, also during unwinding.
struct permit {
    coring::semaphore& s;
    ~permit() { s.release(); }
};

struct probe {
    bool got = false;
    bool released = false;
};

/// Acquires and holds the permit until cancelled at its next wait.
task<> holder(coring::semaphore& s, probe& p) {
    co_await s.acquire();
    p.got = true;
    permit keep{s};
    try {
        co_await coring::sleep(10s);
    } catch (const coring::cancelled_error&) {
        p.released = true;
        throw;
    }
}

using coring_test::fail_soon;

/// Meets its cancellation in a sleep, swallows it, then acquires from both semaphores.
task<> acquire_after_cancel(coring::semaphore& empty, coring::semaphore& full, bool& threw, bool& took) {
    try {
        co_await coring::sleep(10s);
    } catch (const coring::cancelled_error&) {}
    try {
        co_await empty.acquire();
    } catch (const coring::cancelled_error&) {
        threw = true;
    }
    co_await full.acquire();
    took = true;
}

} // namespace

TEST_CASE("semaphore - acquire takes permits until none is left and release gives them back", "[sync][semaphore]") {
    coring::run([]() -> task<> {
        coring::semaphore s(2);
        CHECK(s.available() == 2);
        CHECK_FALSE(s.locked());
        co_await s.acquire();
        co_await s.acquire();
        CHECK(s.available() == 0);
        CHECK(s.locked());
        CHECK_FALSE(s.try_acquire());
        s.release();
        CHECK(s.available() == 1);
        CHECK(s.try_acquire());
        CHECK(s.available() == 0);
        s.release();
        s.release();
        s.release(); // like asyncio.Semaphore, the count may rise above its start
        CHECK(s.available() == 3);
    }());
}

TEST_CASE("semaphore - a negative initial count is rejected", "[sync][semaphore]") {
    CHECK_THROWS_AS(coring::semaphore{-1}, std::invalid_argument);
    coring::semaphore zero(0);
    CHECK(zero.available() == 0);
}

TEST_CASE("semaphore - release beyond the largest count throws std::overflow_error", "[sync][semaphore]") {
    coring::semaphore s(std::numeric_limits<std::ptrdiff_t>::max());
    CHECK_THROWS_AS(s.release(), std::overflow_error);
    CHECK(s.available() == std::numeric_limits<std::ptrdiff_t>::max());
}

TEST_CASE("semaphore - release hands permits to the waiters in order", "[sync][semaphore]") {
    coring::run([]() -> task<> {
        coring::semaphore s(0);
        std::vector<int> order;
        std::vector<coring::join_handle<void>> hs;
        for (int i = 0; i < 5; ++i) hs.push_back(coring::spawn(acquirer(s, i, order)));
        co_await settle();
        CHECK(order.empty());
        for (int i = 0; i < 5; ++i) {
            s.release();
            CHECK(s.available() == 0); // handed over, not counted
            co_await settle();
            CHECK(order.size() == static_cast<std::size_t>(i + 1));
        }
        for (auto& h : hs) co_await h;
        CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
        CHECK(s.available() == 0);
    }());
}

TEST_CASE("semaphore - no barging - try_acquire fails while a released permit is on its way to a waiter",
          "[sync][semaphore]") {
    coring::run([]() -> task<> {
        coring::semaphore s(0);
        std::vector<int> order;
        auto a = coring::spawn(acquirer(s, 1, order));
        co_await settle();
        s.release();
        CHECK_FALSE(s.try_acquire());
        auto b = coring::spawn(acquirer(s, 2, order));
        co_await settle();
        CHECK(order == std::vector<int>{1}); // b queued behind, it did not take a's permit
        s.release();
        co_await a;
        co_await b;
        CHECK(order == std::vector<int>{1, 2});
    }());
}

TEST_CASE("semaphore - a cancelled waiter takes no permit and the others still get theirs",
          "[sync][semaphore][cancel]") {
    coring::run([]() -> task<> {
        coring::semaphore s(0);
        std::vector<int> order;
        auto a = coring::spawn(acquirer(s, 1, order));
        auto b = coring::spawn(acquirer(s, 2, order));
        auto c = coring::spawn(acquirer(s, 3, order));
        co_await settle();
        b.cancel();
        CHECK_THROWS_AS(co_await b, coring::cancelled_error);
        CHECK(s.available() == 0);
        s.release();
        s.release();
        co_await a;
        co_await c;
        CHECK(order == std::vector<int>{1, 3});
        s.release();
        CHECK(s.available() == 1); // nobody left in line: the permit is counted
    }());
}

TEST_CASE("semaphore - a waiter cancelled right after being handed a permit keeps it and the next waiter still "
          "progresses",
          "[sync][semaphore][cancel]") {
    coring::run([]() -> task<> {
        coring::semaphore s(0);
        probe pa, pb;
        auto a = coring::spawn(holder(s, pa));
        auto b = coring::spawn(holder(s, pb));
        co_await settle();
        s.release(); // a's permit now, though a has not run
        a.cancel();
        CHECK_THROWS_AS(co_await a, coring::cancelled_error);
        CHECK(pa.got);
        CHECK(pa.released);
        co_await settle();
        CHECK(pb.got); // a's release went to b: the permit was not lost
        CHECK(s.available() == 0);
        b.cancel();
        CHECK_THROWS_AS(co_await b, coring::cancelled_error);
        CHECK(s.available() == 1); // conserved: the one permit is back
    }());
}

TEST_CASE("semaphore - an already cancelled task does not wait for a permit but takes an available one",
          "[sync][semaphore][cancel]") {
    coring::run([]() -> task<> {
        coring::semaphore empty(0), full(1);
        bool threw = false, took = false;
        auto h = coring::spawn(acquire_after_cancel(empty, full, threw, took));
        co_await settle();
        h.cancel();
        co_await h;
        CHECK(threw);
        CHECK(took);
        CHECK(full.available() == 0);
        empty.release();
        CHECK(empty.available() == 1); // it never queued
    }());
}

TEST_CASE("semaphore - a gather failure cancels a child waiting for a permit", "[sync][semaphore][cancel]") {
    coring::run([]() -> task<> {
        coring::semaphore s(0);
        std::vector<int> order;
        CHECK_THROWS_AS(co_await coring::gather(acquirer(s, 1, order), fail_soon()), std::runtime_error);
        CHECK(order.empty());
        s.release();
        CHECK(s.available() == 1);
    }());
}

TEST_CASE("semaphore - acquire is an awaitable that spawn accepts", "[sync][semaphore]") {
    coring::run([]() -> task<> {
        coring::semaphore s(0);
        auto h = coring::spawn(s.acquire());
        co_await settle();
        CHECK_FALSE(h.done());
        s.release();
        co_await h;
        CHECK(s.available() == 0);
    }());
}

TEST_CASE("semaphore - never more holders than permits", "[sync][semaphore]") {
    coring::run([]() -> task<> {
        coring::semaphore s(3);
        int inside = 0, most = 0;
        std::vector<task<>> ts;
        for (int i = 0; i < 40; ++i)
            ts.push_back([](coring::semaphore& sem, int& in, int& mx) -> task<> {
                for (int k = 0; k < 10; ++k) {
                    co_await sem.acquire();
                    permit p{sem};
                    ++in;
                    if (in > mx) mx = in;
                    co_await coring::yield_now();
                    --in;
                }
            }(s, inside, most));
        co_await coring::gather(std::move(ts));
        CHECK(most == 3);
        CHECK(s.available() == 3);
    }());
}

} // namespace test_semaphore
