#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/sync.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace test_queue {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::settle;

/// Pops one item into `out`.
task<> popper(coring::queue<int>& q, std::vector<int>& out) {
    const int v = co_await q.pop();
    out.push_back(v);
}

/// Pushes `v`, then records it as pushed.
task<> pusher(coring::queue<int>& q, int v, std::vector<int>& pushed) {
    co_await q.push(v);
    pushed.push_back(v);
}

/// Pops one item, records it, then waits elsewhere (where a late cancellation shows up).
task<> pop_then_sleep(coring::queue<int>& q, std::vector<int>& out) {
    const int v = co_await q.pop();
    out.push_back(v);
    co_await coring::sleep(10s);
}

/// Pushes `v`, records it, then waits elsewhere.
task<> push_then_sleep(coring::queue<int>& q, int v, std::vector<int>& pushed) {
    co_await q.push(v);
    pushed.push_back(v);
    co_await coring::sleep(10s);
}

using coring_test::fail_soon;

/// An item type without a default constructor.
struct labelled {
    explicit labelled(std::string s) : label(std::move(s)) {}
    std::string label;
};

} // namespace

TEST_CASE("queue - push and pop in FIFO order with size empty full and capacity", "[sync][queue]") {
    coring::run([]() -> task<> {
        coring::queue<int> q(3);
        CHECK(q.capacity() == 3);
        CHECK(q.empty());
        CHECK_FALSE(q.full());
        CHECK(q.size() == 0);
        co_await q.push(1);
        co_await q.push(2);
        co_await q.push(3);
        CHECK(q.size() == 3);
        CHECK(q.full());
        CHECK_FALSE(q.empty());
        const int a = co_await q.pop();
        const int b = co_await q.pop();
        const int c = co_await q.pop();
        CHECK(a == 1);
        CHECK(b == 2);
        CHECK(c == 3);
        CHECK(q.empty());

        coring::queue<int> unbounded;
        CHECK(unbounded.capacity() == 0);
        for (int i = 0; i < 1000; ++i) co_await unbounded.push(i);
        CHECK_FALSE(unbounded.full());
        CHECK(unbounded.size() == 1000);
        int wrong = 0;
        for (int i = 0; i < 1000; ++i) {
            const int v = co_await unbounded.pop();
            if (v != i) ++wrong;
        }
        CHECK(wrong == 0);
    }());
}

TEST_CASE("queue - the ring keeps FIFO order across wrap-around and growth", "[sync][queue]") {
    coring::queue<int> q;
    int next_in = 0, next_out = 0, wrong = 0, refused = 0;
    // Interleaved pushes and pops move the head around the ring; growing bursts make it reallocate mid-wrap.
    for (int round = 0; round < 200; ++round) {
        for (int i = 0; i < round % 37 + 1; ++i)
            if (!q.try_push(next_in++)) ++refused;
        for (int i = 0; i < round % 23; ++i) {
            auto v = q.try_pop();
            if (!v) break;
            if (*v != next_out++) ++wrong;
        }
    }
    while (auto v = q.try_pop())
        if (*v != next_out++) ++wrong;
    CHECK(refused == 0);
    CHECK(wrong == 0);
    CHECK(next_out == next_in);
    CHECK(q.empty());
}

TEST_CASE("queue - pop waits for a push and the item goes straight to the waiting popper", "[sync][queue]") {
    coring::run([]() -> task<> {
        coring::queue<int> q;
        std::vector<int> out;
        auto h = coring::spawn(popper(q, out));
        co_await settle();
        CHECK(out.empty());
        co_await q.push(42);
        CHECK(q.size() == 0); // handed over, never in the buffer
        CHECK(q.empty());
        co_await h;
        CHECK(out == std::vector<int>{42});
    }());
}

TEST_CASE("queue - poppers are served in FIFO order", "[sync][queue]") {
    coring::run([]() -> task<> {
        coring::queue<int> q;
        std::vector<int> out;
        std::vector<coring::join_handle<void>> hs;
        for (int i = 0; i < 5; ++i) {
            hs.push_back(coring::spawn(popper(q, out)));
            co_await settle(); // popper i is in line before popper i + 1
        }
        for (int i = 0; i < 5; ++i) CHECK(q.try_push(i * 10));
        for (auto& h : hs) co_await h;
        CHECK(out == std::vector<int>{0, 10, 20, 30, 40});
    }());
}

TEST_CASE("queue - push waits while a bounded queue is full and each pop lets the oldest pusher in", "[sync][queue]") {
    coring::run([]() -> task<> {
        coring::queue<int> q(2);
        std::vector<int> pushed;
        co_await q.push(1);
        co_await q.push(2);
        std::vector<coring::join_handle<void>> hs;
        for (int v = 3; v <= 5; ++v) {
            hs.push_back(coring::spawn(pusher(q, v, pushed)));
            co_await settle();
        }
        CHECK(pushed.empty());
        CHECK(q.size() == 2);
        const int first = co_await q.pop();
        CHECK(first == 1);
        CHECK(q.size() == 2); // 3 moved in as 1 left
        CHECK(q.full());
        std::vector<int> rest;
        for (int i = 0; i < 4; ++i) {
            const int v = co_await q.pop();
            rest.push_back(v);
        }
        CHECK(rest == std::vector<int>{2, 3, 4, 5});
        for (auto& h : hs) co_await h;
        CHECK(pushed == std::vector<int>{3, 4, 5});
        CHECK(q.empty());
    }());
}

TEST_CASE("queue - try_push and try_pop never wait", "[sync][queue]") {
    coring::run([]() -> task<> {
        coring::queue<std::unique_ptr<int>> q(1);
        CHECK_FALSE(q.try_pop().has_value());
        CHECK(q.try_push(std::make_unique<int>(1)));
        auto p = std::make_unique<int>(2);
        CHECK_FALSE(q.try_push(std::move(p))); // full: the item is left with the caller
        REQUIRE(p);
        CHECK(*p == 2);
        auto got = q.try_pop();
        REQUIRE(got.has_value());
        REQUIRE(*got);
        CHECK(**got == 1);
        CHECK(q.empty());

        // try_push to a waiting popper hands the item over even on a full-sized queue.
        coring::queue<int> ints(1);
        std::vector<int> out;
        auto h = coring::spawn(popper(ints, out));
        co_await settle();
        CHECK(ints.try_push(7));
        const int copy = 8;
        CHECK(ints.try_push(copy)); // the copying overload
        co_await h;
        CHECK(out == std::vector<int>{7});
        const auto left = ints.try_pop();
        CHECK(left == std::optional<int>(8));
    }());
}

TEST_CASE("queue - move-only items and items without a default constructor", "[sync][queue]") {
    coring::run([]() -> task<> {
        coring::queue<std::unique_ptr<int>> q;
        co_await q.push(std::make_unique<int>(5));
        std::unique_ptr<int> p = co_await q.pop();
        REQUIRE(p);
        CHECK(*p == 5);

        coring::queue<labelled> l(1);
        co_await l.push(labelled("a"));
        labelled a = co_await l.pop();
        CHECK(a.label == "a");
    }());
}

TEST_CASE("queue - close wakes the waiting poppers with queue_closed", "[sync][queue][close]") {
    coring::run([]() -> task<> {
        coring::queue<int> q;
        std::vector<int> out;
        auto a = coring::spawn(popper(q, out));
        auto b = coring::spawn(popper(q, out));
        co_await settle();
        q.close();
        CHECK(q.closed());
        CHECK_THROWS_AS(co_await a, coring::queue_closed);
        CHECK_THROWS_AS(co_await b, coring::queue_closed);
        CHECK(out.empty());
        q.close(); // idempotent
    }());
}

TEST_CASE("queue - close wakes the waiting pushers with queue_closed and their items are not enqueued",
          "[sync][queue][close]") {
    coring::run([]() -> task<> {
        coring::queue<int> q(1);
        std::vector<int> pushed;
        co_await q.push(1);
        auto a = coring::spawn(pusher(q, 2, pushed));
        auto b = coring::spawn(pusher(q, 3, pushed));
        co_await settle();
        q.close();
        CHECK_THROWS_AS(co_await a, coring::queue_closed);
        CHECK_THROWS_AS(co_await b, coring::queue_closed);
        CHECK(pushed.empty());
        CHECK(q.size() == 1);
        const int v = co_await q.pop();
        CHECK(v == 1);
    }());
}

TEST_CASE("queue - a closed queue keeps returning its items then throws queue_closed", "[sync][queue][close]") {
    coring::run([]() -> task<> {
        coring::queue<int> q;
        co_await q.push(1);
        co_await q.push(2);
        q.close();
        CHECK_THROWS_AS(co_await q.push(3), coring::queue_closed);
        CHECK_FALSE(q.try_push(3));
        CHECK(q.size() == 2);
        const int a = co_await q.pop();
        const auto b = q.try_pop();
        CHECK(a == 1);
        CHECK(b == std::optional<int>(2));
        CHECK_THROWS_AS(co_await q.pop(), coring::queue_closed);
        CHECK_THROWS_WITH(co_await q.pop(), "coring: the queue is closed");
        CHECK_FALSE(q.try_pop().has_value());
    }());
}

TEST_CASE("queue - a cancelled popper takes nothing and the next popper gets the item", "[sync][queue][cancel]") {
    coring::run([]() -> task<> {
        coring::queue<int> q;
        std::vector<int> out;
        auto a = coring::spawn(popper(q, out));
        auto b = coring::spawn(popper(q, out));
        co_await settle();
        a.cancel();
        CHECK_THROWS_AS(co_await a, coring::cancelled_error);
        co_await q.push(1);
        co_await b;
        CHECK(out == std::vector<int>{1});
        CHECK(q.empty());
    }());
}

TEST_CASE("queue - a cancelled pusher does not enqueue its item", "[sync][queue][cancel]") {
    coring_test::lifetime::alive = 0;
    coring::run([]() -> task<> {
        {
            coring::queue<coring_test::lifetime> q(1);
            co_await q.push(coring_test::lifetime(1));
            auto h = coring::spawn(q.push(coring_test::lifetime(2)));
            co_await settle();
            h.cancel();
            CHECK_THROWS_AS(co_await h, coring::cancelled_error);
            CHECK(q.size() == 1);
            coring_test::lifetime one = co_await q.pop();
            CHECK(one.value == 1);
            CHECK(q.empty());
        }
        CHECK(coring_test::lifetime::alive == 0); // the cancelled pusher's item was destroyed, not leaked
    }());
}

TEST_CASE("queue - a popper cancelled right after receiving an item keeps it and the next popper still progresses",
          "[sync][queue][cancel]") {
    coring::run([]() -> task<> {
        coring::queue<int> q;
        std::vector<int> out;
        auto a = coring::spawn(pop_then_sleep(q, out));
        auto b = coring::spawn(pop_then_sleep(q, out));
        co_await settle();
        co_await q.push(1); // straight into a's awaiter
        a.cancel();         // too late: a returns the item, the cancellation hits its sleep
        CHECK_THROWS_AS(co_await a, coring::cancelled_error);
        CHECK(out == std::vector<int>{1});
        co_await q.push(2);
        co_await settle();
        CHECK(out == std::vector<int>{1, 2}); // b got the next one
        b.cancel();
        CHECK_THROWS_AS(co_await b, coring::cancelled_error);
        CHECK(q.empty());
    }());
}

TEST_CASE("queue - a pusher cancelled right after its item was let in still counts as pushed",
          "[sync][queue][cancel]") {
    coring::run([]() -> task<> {
        coring::queue<int> q(1);
        std::vector<int> pushed;
        co_await q.push(1);
        auto a = coring::spawn(push_then_sleep(q, 2, pushed));
        auto b = coring::spawn(push_then_sleep(q, 3, pushed));
        co_await settle();
        const int first = co_await q.pop(); // lets a's item in
        CHECK(first == 1);
        a.cancel();
        CHECK_THROWS_AS(co_await a, coring::cancelled_error);
        CHECK(pushed == std::vector<int>{2});
        const int second = co_await q.pop(); // lets b's item in
        CHECK(second == 2);
        co_await settle();
        CHECK(pushed == std::vector<int>{2, 3});
        const int third = co_await q.pop();
        CHECK(third == 3);
        b.cancel();
        CHECK_THROWS_AS(co_await b, coring::cancelled_error);
    }());
}

TEST_CASE("queue - an already cancelled task does not wait on an empty queue but takes a queued item",
          "[sync][queue][cancel]") {
    coring::run([]() -> task<> {
        coring::queue<int> empty, full(1);
        co_await full.push(9);
        int got = 0;
        bool threw_pop = false, threw_push = false;
        auto h = coring::spawn([](coring::queue<int>& e, coring::queue<int>& f, int& g, bool& tp, bool& tpu) -> task<> {
            try {
                co_await coring::sleep(10s);
            } catch (const coring::cancelled_error&) {}
            try {
                (void)co_await e.pop();
            } catch (const coring::cancelled_error&) {
                tp = true;
            }
            try {
                co_await f.push(10); // full: would wait
            } catch (const coring::cancelled_error&) {
                tpu = true;
            }
            g = co_await f.pop(); // an item is there: no waiting needed
        }(empty, full, got, threw_pop, threw_push));
        co_await settle();
        h.cancel();
        co_await h;
        CHECK(threw_pop);
        CHECK(threw_push);
        CHECK(got == 9);
        CHECK(full.empty());
        CHECK(empty.try_push(1)); // nobody waits on it
        CHECK(empty.size() == 1);
    }());
}

TEST_CASE("queue - a gather failure cancels a child waiting to pop", "[sync][queue][cancel]") {
    coring::run([]() -> task<> {
        coring::queue<int> q;
        std::vector<int> out;
        CHECK_THROWS_AS(co_await coring::gather(popper(q, out), fail_soon()), std::runtime_error);
        co_await q.push(1);
        CHECK(q.size() == 1); // no popper in line any more: the item stays queued
        CHECK(out.empty());
    }());
}

TEST_CASE("queue - push and pop are awaitables that spawn and gather accept", "[sync][queue]") {
    coring::run([]() -> task<> {
        coring::queue<std::string> q(1);
        auto popped = coring::spawn(q.pop());
        co_await settle();
        CHECK_FALSE(popped.done());
        co_await coring::gather(q.push("x"), q.push("y")); // x goes to the waiting popper, y into the queue
        const std::string first = co_await std::move(popped);
        CHECK(first == "x");
        auto [second, nothing] = co_await coring::gather(q.pop(), q.push("z"));
        (void)nothing;
        CHECK(second == "y");
        CHECK(q.size() == 1);
    }());
}

TEST_CASE("queue - items left in a destroyed queue are destroyed", "[sync][queue]") {
    coring_test::lifetime::alive = 0;
    {
        coring::queue<coring_test::lifetime> q;
        for (int i = 0; i < 100; ++i) (void)q.try_push(coring_test::lifetime(i));
        for (int i = 0; i < 30; ++i) (void)q.try_pop();
        CHECK(q.size() == 70);
        CHECK(coring_test::lifetime::alive == 70);
    }
    CHECK(coring_test::lifetime::alive == 0);
}

TEST_CASE("queue - waiters of a destroyed queue stay suspended until cancelled", "[sync][queue][cancel]") {
    coring::run([]() -> task<> {
        std::vector<int> out, pushed;
        coring::join_handle<void> a, b;
        {
            coring::queue<int> empty;
            coring::queue<int> full(1);
            CHECK(full.try_push(1));
            a = coring::spawn(popper(empty, out));
            b = coring::spawn(pusher(full, 2, pushed));
            co_await settle();
        }
        co_await settle();
        CHECK_FALSE(a.done());
        CHECK_FALSE(b.done());
        a.cancel();
        b.cancel();
        CHECK_THROWS_AS(co_await a, coring::cancelled_error);
        CHECK_THROWS_AS(co_await b, coring::cancelled_error);
        CHECK(out.empty());
        CHECK(pushed.empty());
    }());
}

TEST_CASE("queue - an awaiter destroyed while waiting leaves the wait list", "[sync][queue]") {
    coring::run([]() -> task<> {
        coring::queue<int> q;
        std::vector<int> out;
        {
            task<> t = popper(q, out);
            t.handle().resume(); // started by hand, destroyed while suspended in pop()
            CHECK_FALSE(t.done());
        }
        CHECK(q.try_push(1)); // must not hand the item to the destroyed frame
        CHECK(q.size() == 1);
        CHECK(out.empty());
        co_return;
    }());
}

} // namespace test_queue
