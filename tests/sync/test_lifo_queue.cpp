#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <deque>
#include <type_traits>
#include <vector>

namespace test_lifo_queue {

using coring::task;

namespace {

using coring_test::settle;

/// An ordinary user type whose move constructor may throw (as any struct holding a libstdc++ std::deque).
struct job {
    int v = 0;
    std::deque<int> payload;
    explicit job(int x) : v(x) {}
    bool operator<(const job& o) const { return v < o.v; }
};
static_assert(!std::is_nothrow_move_constructible_v<job>);

} // namespace

TEST_CASE("lifo_queue - the newest item comes out first, as asyncio.LifoQueue", "[sync][lifo_queue]") {
    coring::event_loop loop;
    coring::lifo_queue<int> q;
    std::vector<int> out;
    loop.run([&]() -> task<> {
        for (int i = 1; i <= 4; ++i) co_await q.push(i);
        out.push_back(co_await q.pop());
        co_await q.push(9);
        while (!q.empty()) out.push_back(co_await q.pop());
    }());
    CHECK(out == std::vector<int>{4, 9, 3, 2, 1});
}

TEST_CASE("lifo_queue - bounded: a pusher waits until a pop - a cancelled pusher enqueues nothing - close",
          "[sync][lifo_queue]") {
    coring::event_loop loop;
    coring::lifo_queue<int> q(1);
    std::vector<int> out;
    loop.run([&]() -> task<> {
        co_await q.push(1);
        auto blocked = coring::spawn([](coring::lifo_queue<int>& q) -> task<> { co_await q.push(2); }(q));
        auto cancelled = coring::spawn([](coring::lifo_queue<int>& q) -> task<> { co_await q.push(3); }(q));
        co_await settle();
        cancelled.cancel();
        bool was_cancelled = false;
        try {
            co_await cancelled;
        } catch (const coring::cancelled_error&) {
            was_cancelled = true;
        }
        CHECK(was_cancelled);
        out.push_back(co_await q.pop()); // 1; then 2 moves in
        co_await blocked;
        out.push_back(co_await q.pop());
        CHECK(q.empty());
        q.close();
        CHECK_FALSE(q.try_push(4));
    }());
    CHECK(out == std::vector<int>{1, 2});
}

TEST_CASE(
    "lifo_queue - a pop from a full queue with a waiting pusher gives the newest queued item when T's move may throw",
    "[sync][lifo_queue]") {
    coring::event_loop loop;
    coring::lifo_queue<job> q(2);
    std::vector<int> out;
    loop.run([&]() -> task<> {
        co_await q.push(job(1));
        co_await q.push(job(2));
        auto pusher = coring::spawn([](coring::lifo_queue<job>& q) -> task<> { co_await q.push(job(3)); }(q));
        co_await settle();
        out.push_back((co_await q.pop()).v); // the newest queued item, not the pusher's
        co_await pusher;
        out.push_back((co_await q.pop()).v);
        out.push_back((co_await q.pop()).v);
    }());
    CHECK(out == std::vector<int>{2, 3, 1});
}

TEST_CASE("lifo_queue - the same with a noexcept move gives the same order", "[sync][lifo_queue]") {
    coring::event_loop loop;
    coring::lifo_queue<int> q(2);
    std::vector<int> out;
    loop.run([&]() -> task<> {
        co_await q.push(1);
        co_await q.push(2);
        auto pusher = coring::spawn([](coring::lifo_queue<int>& q) -> task<> { co_await q.push(3); }(q));
        co_await settle();
        out.push_back(co_await q.pop());
        co_await pusher;
        out.push_back(co_await q.pop());
        out.push_back(co_await q.pop());
    }());
    CHECK(out == std::vector<int>{2, 3, 1});
}

} // namespace test_lifo_queue
