#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace test_priority_queue {

using coring::task;

namespace {

using coring_test::settle;

} // namespace

TEST_CASE("priority_queue - the smallest item comes out first, as asyncio.PriorityQueue", "[sync][priority_queue]") {
    coring::event_loop loop;
    coring::priority_queue<std::pair<int, std::string>> q;
    std::vector<std::string> out;
    loop.run([&]() -> task<> {
        const std::vector<std::pair<int, std::string>> in{{5, "e"}, {1, "a"}, {3, "c"}, {2, "b"}, {4, "d"}};
        for (const auto& p : in) co_await q.push(p);
        while (!q.empty()) out.push_back((co_await q.pop()).second);
    }());
    CHECK(out == std::vector<std::string>{"a", "b", "c", "d", "e"});
}

TEST_CASE("priority_queue - std::greater gives largest first - many items in heap order", "[sync][priority_queue]") {
    coring::priority_queue<int, std::greater<int>> q;
    std::vector<int> in;
    for (int i = 0; i < 5000; ++i) in.push_back((i * 7919) % 5000);
    for (int v : in) REQUIRE(q.try_push(v));
    std::vector<int> out;
    while (auto v = q.try_pop()) out.push_back(*v);
    REQUIRE(out.size() == 5000);
    CHECK(std::is_sorted(out.begin(), out.end(), std::greater<int>()));
}

TEST_CASE("priority_queue - a bounded queue makes pushers wait - a pop admits the waiting pusher's item",
          "[sync][priority_queue]") {
    coring::event_loop loop;
    coring::priority_queue<int> q(2);
    std::vector<int> out;
    loop.run([&]() -> task<> {
        co_await q.push(10);
        co_await q.push(20);
        CHECK(q.full());
        auto pusher = coring::spawn([](coring::priority_queue<int>& q) -> task<> { co_await q.push(1); }(q));
        co_await settle();
        CHECK_FALSE(pusher.done());
        out.push_back(co_await q.pop()); // 10; then 1 moves in
        co_await pusher;
        out.push_back(co_await q.pop());
        out.push_back(co_await q.pop());
        // A popper waits on the empty queue and takes the next push directly.
        auto popper = coring::spawn([](coring::priority_queue<int>& q) -> task<int> { co_return co_await q.pop(); }(q));
        co_await settle();
        co_await q.push(7);
        out.push_back(co_await popper);
        q.close();
        CHECK_THROWS_AS(q.try_pop().value(), std::bad_optional_access);
    }());
    CHECK(out == std::vector<int>{10, 1, 20, 7});
}

namespace {
struct flaky_less {
    static inline int throw_on = -1; // throws (once) when it compares this priority
    bool operator()(const std::pair<int, std::string>& a, const std::pair<int, std::string>& b) const {
        if (a.first == throw_on || b.first == throw_on) {
            throw_on = -1;
            throw std::runtime_error("comparison failed");
        }
        return a.first < b.first;
    }
};
} // namespace

TEST_CASE("priority_queue - a push whose comparison throws leaves the queue as it was", "[sync][priority_queue]") {
    coring::priority_queue<std::pair<int, std::string>, flaky_less> q;
    REQUIRE(q.try_push({1, std::string(30, 'a')}));
    REQUIRE(q.try_push({2, std::string(30, 'b')}));
    flaky_less::throw_on = 0;
    CHECK_THROWS_AS(q.try_push({0, std::string(30, 'z')}), std::runtime_error);
    CHECK(q.size() == 2);
    std::vector<std::string> out;
    while (auto v = q.try_pop()) out.push_back(v->second);
    CHECK(out == std::vector<std::string>{std::string(30, 'a'), std::string(30, 'b')});
}

} // namespace test_priority_queue
