#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <forward_list>
#include <list>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_map_bounded {

using namespace std::chrono_literals;
using coring::task;

namespace {

struct load {
    int now = 0;
    int peak = 0;
    int started = 0;
};

task<int> square(int x, load& l) {
    ++l.started;
    l.peak = std::max(l.peak, ++l.now);
    try {
        co_await coring::sleep(std::chrono::milliseconds(1 + (x * 7) % 5));
    } catch (...) {
        --l.now;
        throw;
    }
    --l.now;
    co_return x* x;
}

} // namespace

TEST_CASE("map_bounded - results in item order, never more than the limit at once", "[task][map_bounded]") {
    load l;
    std::vector<int> out;
    coring::run([](load& l, std::vector<int>& out) -> task<> {
        std::vector<int> items;
        for (int i = 0; i < 100; ++i) items.push_back(i);
        out = co_await coring::map_bounded(items, 8, [&l](int x) { return square(x, l); });
    }(l, out));
    REQUIRE(out.size() == 100);
    for (int i = 0; i < 100; ++i) CHECK(out[i] == i * i);
    CHECK(l.peak == 8);
    CHECK(l.started == 100);
}

TEST_CASE("map_bounded - a range without size and void results", "[task][map_bounded]") {
    load l;
    int sum = 0;
    coring::run([](load& l, int& sum) -> task<> {
        std::list<int> items{1, 2, 3, 4, 5};
        co_await coring::map_bounded(items, 2, [&l, &sum](int x) -> task<> { sum += co_await square(x, l); });
    }(l, sum));
    CHECK(sum == 55);
    CHECK(l.peak == 2);
}

TEST_CASE("map_bounded - the first failure stops the rest and is rethrown", "[task][map_bounded]") {
    load l;
    std::string error;
    coring::run([](load& l, std::string& error) -> task<> {
        std::vector<int> items(50);
        for (int i = 0; i < 50; ++i) items[i] = i;
        try {
            (void)co_await coring::map_bounded(items, 4, [&l](int x) -> task<int> {
                if (x == 5) throw std::runtime_error("bad item 5");
                co_return co_await square(x, l);
            });
        } catch (const std::runtime_error& e) {
            error = e.what();
        }
        CHECK(l.now == 0); // nothing left running
    }(l, error));
    CHECK(error == "bad item 5");
    CHECK(l.started < 12); // no new item after the failure
    CHECK_THROWS_AS(coring::map_bounded(std::vector<int>{1}, 0, [](int) -> task<> { co_return; }),
                    std::invalid_argument);
}

TEST_CASE("gather with a limit - {.limit = n} bounds how many run - results in order", "[task][map_bounded]") {
    load l;
    std::vector<int> out;
    coring::run([](load& l, std::vector<int>& out) -> task<> {
        std::vector<task<int>> ts;
        for (int i = 0; i < 30; ++i) ts.push_back(square(i, l));
        out = co_await coring::gather(std::move(ts), {.limit = 3});
        CHECK(l.peak == 3);
        std::vector<task<int>> all;
        for (int i = 0; i < 10; ++i) all.push_back(square(i, l));
        l.peak = 0;
        auto unbounded = co_await coring::gather(std::move(all), {});
        CHECK(unbounded.size() == 10);
        CHECK(l.peak == 10);
    }(l, out));
    REQUIRE(out.size() == 30);
    CHECK(out[29] == 29 * 29);
}

TEST_CASE("gather with a limit - cancelling the caller cancels what runs and starts nothing more",
          "[task][map_bounded]") {
    load l;
    coring::event_loop loop;
    loop.run([](load& l) -> task<> {
        std::vector<task<int>> ts;
        for (int i = 0; i < 20; ++i)
            ts.push_back([](load& l) -> task<int> {
                ++l.started;
                ++l.now;
                try {
                    co_await coring::sleep(10s);
                } catch (...) {
                    --l.now;
                    throw;
                }
                co_return 0;
            }(l));
        auto h = coring::spawn(coring::gather(std::move(ts), {.limit = 5}));
        co_await coring::sleep(10ms);
        CHECK(l.started == 5);
        h.cancel();
        bool cancelled = false;
        try {
            (void)co_await h;
        } catch (const coring::cancelled_error&) {
            cancelled = true;
        }
        CHECK(cancelled);
        CHECK(l.now == 0);
        CHECK(l.started == 5);
    }(l));
    CHECK(loop.task_count() == 0);
}

// Cases from an independent review (each failed, or would fail under Clang with ASan, before its fix).

// D1: a forward range without size(): map_worker grows s.results with resize() while another worker is suspended in
// `s.results[i].emplace(co_await t)`, whose object expression `s.results[i]` was evaluated before the suspension
// (C++17 sequencing of E1.f(E2)). The reallocation leaves it writing into freed memory: ASan heap-use-after-free.
TEST_CASE("map_bounded - a range without size() and results of a type with heap memory", "[task][map_bounded]") {
    std::vector<std::string> out;
    coring::run([](std::vector<std::string>& out) -> task<> {
        std::forward_list<int> items{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
        auto fn = [](int x) -> task<std::string> {
            co_await coring::sleep(std::chrono::milliseconds(1 + (x * 7) % 5));
            co_return std::string(40, static_cast<char>('a' + x % 26));
        };
        out = co_await coring::map_bounded(items, 4, fn);
    }(out));
    REQUIRE(out.size() == 20);
    for (int i = 0; i < 20; ++i) CHECK(out[i] == std::string(40, static_cast<char>('a' + (i + 1) % 26)));
}

// D2: "the first failure stops the rest, no new one starts": a worker whose item finished in the same turn as the
// failure (woken before the cancellation arrived) takes the next item anyway, and fn runs for it (a task awaited
// directly runs its body up to its first wait). With gather(tasks, {.limit}), a task "not started when one fails"
// does start.
TEST_CASE("map_bounded - no item starts after the first failure", "[task][map_bounded]") {
    std::vector<int> started;
    coring::run([](std::vector<int>& started) -> task<> {
        coring::event ev;
        std::vector<int> items{0, 1, 2, 3};
        auto fn = [&](int x) -> task<int> {
            started.push_back(x);
            if (x == 0) {
                co_await coring::yield_now();
                ev.set();                                  // wakes item 1 (granted) ...
                throw std::runtime_error("item 0 failed"); // ... then fails: the workers are cancelled
            }
            if (x == 1) {
                co_await ev.wait(); // granted before the cancellation: returns normally
                co_return x;
            }
            co_await coring::sleep(1ms);
            co_return x;
        };
        try {
            (void)co_await coring::map_bounded(items, 2, fn);
        } catch (const std::runtime_error&) {}
    }(started));
    CHECK(started == std::vector<int>{0, 1});
}

TEST_CASE("gather with a limit - no task starts after the first failure", "[task][map_bounded]") {
    std::vector<int> started;
    coring::run([](std::vector<int>& started) -> task<> {
        coring::event ev;
        auto t = [](std::vector<int>& started, coring::event& ev, int x) -> task<int> {
            started.push_back(x);
            if (x == 0) {
                co_await coring::yield_now();
                ev.set();
                throw std::runtime_error("task 0 failed");
            }
            if (x == 1) {
                co_await ev.wait(); // granted before the cancellation: returns normally
                co_return x;
            }
            co_await coring::sleep(1ms);
            co_return x;
        };
        std::vector<task<int>> ts;
        for (int i = 0; i < 4; ++i) ts.push_back(t(started, ev, i));
        try {
            (void)co_await coring::gather(std::move(ts), {.limit = 2});
        } catch (const std::runtime_error&) {}
    }(started));
    CHECK(started == std::vector<int>{0, 1});
}

} // namespace test_map_bounded
