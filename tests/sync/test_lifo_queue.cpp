#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <vector>

using coring::task;

namespace {

task<> settle(int turns = 5) {
    for (int i = 0; i < turns; ++i) co_await coring::yield_now();
}

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

TEST_CASE("lifo_queue - bounded: a pusher waits until a pop; a cancelled pusher enqueues nothing; close",
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
