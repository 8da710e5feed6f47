#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_barrier {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::settle;

/// Passes the barrier `rounds` times, recording (round, index) and the phase it saw.
task<> party(coring::barrier& b, int rounds, int& phase, std::vector<std::pair<int, std::size_t>>& seen, int& early) {
    for (int r = 0; r < rounds; ++r) {
        if (phase != r) ++early;
        const std::size_t index = co_await b.wait();
        if (index == b.parties() - 1) ++phase; // the last arrival moves everyone on
        seen.emplace_back(r, index);
        co_await coring::yield_now();
    }
}

} // namespace

TEST_CASE("barrier - nobody passes before all have arrived, every round, with indices 0..n-1", "[sync][barrier]") {
    coring::event_loop loop;
    coring::barrier b(4);
    int phase = 0;
    int early = 0;
    std::vector<std::pair<int, std::size_t>> seen;
    loop.run([&]() -> task<> {
        std::vector<coring::join_handle<void>> hs;
        for (int i = 0; i < 4; ++i) hs.push_back(coring::spawn(party(b, 10, phase, seen, early)));
        for (auto& h : hs) co_await h;
    }());
    CHECK(early == 0);
    CHECK(phase == 10);
    REQUIRE(seen.size() == 40);
    for (int r = 0; r < 10; ++r) {
        std::vector<std::size_t> idx;
        for (auto& [round, i] : seen)
            if (round == r) idx.push_back(i);
        std::sort(idx.begin(), idx.end());
        CHECK(idx == std::vector<std::size_t>{0, 1, 2, 3});
    }
    CHECK(b.waiting() == 0);
}

TEST_CASE("barrier - a cancelled waiter leaves its round, which then needs one more", "[sync][barrier]") {
    coring::event_loop loop;
    coring::barrier b(2);
    std::vector<std::string> log;
    loop.run([&]() -> task<> {
        auto waits = [](coring::barrier& b, std::vector<std::string>& log, std::string name) -> task<> {
            try {
                const std::size_t i = co_await b.wait();
                log.push_back(name + " passed " + std::to_string(i));
            } catch (const coring::cancelled_error&) {
                log.push_back(name + " cancelled");
            }
        };
        auto a = coring::spawn(waits(b, log, "a"));
        co_await settle();
        CHECK(b.waiting() == 1);
        a.cancel();
        co_await a;
        CHECK(b.waiting() == 0);
        auto c = coring::spawn(waits(b, log, "c"));
        co_await settle();
        CHECK(log.size() == 1); // c waits: a's arrival no longer counts
        const std::size_t mine = co_await b.wait();
        co_await c;
        CHECK(mine == 1);
    }());
    CHECK(log == std::vector<std::string>{"a cancelled", "c passed 0"});
}

TEST_CASE("barrier - abort breaks it for waiters and later arrivals until reset", "[sync][barrier]") {
    coring::event_loop loop;
    coring::barrier b(3);
    std::vector<std::string> log;
    loop.run([&]() -> task<> {
        auto waits = [](coring::barrier& b, std::vector<std::string>& log) -> task<> {
            try {
                (void)co_await b.wait();
                log.push_back("passed");
            } catch (const coring::broken_barrier&) {
                log.push_back("broken");
            }
        };
        auto w1 = coring::spawn(waits(b, log));
        co_await settle();
        b.abort();
        co_await w1;
        CHECK(b.broken());
        co_await waits(b, log); // does not wait: broken
        b.reset();
        CHECK_FALSE(b.broken());
        auto w2 = coring::spawn(waits(b, log));
        auto w3 = coring::spawn(waits(b, log));
        co_await settle();
        b.reset(); // breaks the round under way, then the barrier is whole again
        co_await w2;
        co_await w3;
        CHECK_FALSE(b.broken());
        auto w4 = coring::spawn(waits(b, log));
        auto w5 = coring::spawn(waits(b, log));
        co_await waits(b, log);
        co_await w4;
        co_await w5;
    }());
    CHECK(log == std::vector<std::string>{"broken", "broken", "broken", "broken", "passed", "passed", "passed"});
    CHECK_THROWS_AS(coring::barrier(0), std::invalid_argument);
}

TEST_CASE("barrier - one party never waits", "[sync][barrier]") {
    coring::event_loop loop;
    coring::barrier b(1);
    std::size_t sum = 1;
    loop.run([&]() -> task<> {
        for (int i = 0; i < 3; ++i) sum += co_await b.wait();
    }());
    CHECK(sum == 1);
}

TEST_CASE("barrier - a waiter released and cancelled in the same turn returns its index", "[sync][barrier]") {
    coring::event_loop loop;
    coring::barrier b(2);
    std::vector<std::string> log;
    loop.run([&]() -> task<> {
        auto a = coring::spawn([](coring::barrier& b, std::vector<std::string>& log) -> task<> {
            try {
                const std::size_t i = co_await b.wait();
                log.push_back("a passed " + std::to_string(i));
            } catch (const coring::cancelled_error&) {
                log.push_back("a cancelled");
            }
        }(b, log));
        co_await settle();
        const std::size_t mine = co_await b.wait(); // releases a ...
        a.cancel();                                 // ... which is cancelled before it runs
        co_await a;
        CHECK(mine == 1);
        // An already cancelled task does not arrive.
        auto c = coring::spawn([](coring::barrier& b, std::vector<std::string>& log) -> task<> {
            try {
                co_await coring::sleep(10s);
            } catch (const coring::cancelled_error&) {}
            try {
                (void)co_await b.wait();
                log.push_back("c passed");
            } catch (const coring::cancelled_error&) {
                log.push_back("c did not arrive");
            }
        }(b, log));
        co_await settle();
        c.cancel();
        co_await c;
        CHECK(b.waiting() == 0);
    }());
    CHECK(log == std::vector<std::string>{"a passed 0", "c did not arrive"});
}

} // namespace test_barrier
