#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_as_completed {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::after;

using coring_test::fails_after;

/// Sleeps `d`, counting how it ended.
task<int> counted_sleep(std::chrono::milliseconds d, int v, int& finished, int& cancelled) {
    try {
        co_await coring::sleep(d);
    } catch (const coring::cancelled_error&) {
        ++cancelled;
        throw;
    }
    ++finished;
    co_return v;
}

} // namespace

TEST_CASE("as_completed - results come in the order the tasks finish, with their positions", "[task][as_completed]") {
    std::vector<int> values;
    std::vector<std::size_t> positions;
    coring::run([](std::vector<int>& values, std::vector<std::size_t>& positions) -> task<> {
        std::vector<task<int>> ts;
        ts.push_back(after(60ms, 3));
        ts.push_back(after(20ms, 1));
        ts.push_back(after(40ms, 2));
        ts.push_back(after(0ms, 0));
        auto ac = coring::as_completed(std::move(ts));
        CHECK(ac.size() == 4);
        while (ac.remaining() > 0) {
            const int v = co_await ac.next();
            values.push_back(v);
            positions.push_back(ac.last_index());
        }
        bool refused = false;
        try {
            (void)co_await ac.next();
        } catch (const std::logic_error&) {
            refused = true;
        }
        CHECK(refused);
    }(values, positions));
    CHECK(values == std::vector<int>{0, 1, 2, 3});
    CHECK(positions == std::vector<std::size_t>{3, 1, 2, 0});
}

TEST_CASE("as_completed - an exception comes out of the next() that reaches its task - the rest go on",
          "[task][as_completed]") {
    std::vector<std::string> log;
    coring::run([](std::vector<std::string>& log) -> task<> {
        std::vector<task<int>> ts;
        ts.push_back(after(30ms, 7));
        ts.push_back(fails_after(10ms));
        auto ac = coring::as_completed(std::move(ts));
        for (int k = 0; k < 2; ++k) {
            try {
                log.push_back("value " + std::to_string(co_await ac.next()));
            } catch (const std::runtime_error& e) {
                log.push_back(std::string("error ") + e.what() + " at " + std::to_string(ac.last_index()));
            }
        }
    }(log));
    CHECK(log == std::vector<std::string>{"error failed at 1", "value 7"});
}

TEST_CASE("as_completed - abandoning it cancels the tasks still running", "[task][as_completed]") {
    int finished = 0;
    int cancelled = 0;
    coring::event_loop loop;
    loop.run([](int& finished, int& cancelled) -> task<> {
        {
            std::vector<task<int>> ts;
            for (int i = 0; i < 5; ++i) ts.push_back(counted_sleep(i == 0 ? 1ms : 10s, i, finished, cancelled));
            auto ac = coring::as_completed(std::move(ts));
            const int first = co_await ac.next();
            CHECK(first == 0);
        } // abandoned with four running
        for (int i = 0; i < 5; ++i) co_await coring::yield_now();
        CHECK(cancelled == 4);
    }(finished, cancelled));
    CHECK(finished == 1);
    CHECK(cancelled == 4);
    CHECK(loop.task_count() == 0);
}

TEST_CASE("as_completed - cancelling the task waiting in next() leaves the set usable", "[task][as_completed]") {
    std::vector<int> values;
    coring::run([](std::vector<int>& values) -> task<> {
        std::vector<task<int>> ts;
        ts.push_back(after(30ms, 1));
        ts.push_back(after(50ms, 2));
        auto ac = coring::as_completed(std::move(ts));
        bool timed_out = false;
        try {
            (void)co_await coring::timeout(5ms, ac.next());
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        CHECK(timed_out);
        CHECK(ac.remaining() == 2);
        values.push_back(co_await ac.next());
        values.push_back(co_await ac.next());
    }(values));
    CHECK(values == std::vector<int>{1, 2});
}

TEST_CASE("as_completed - two next() waiting for the last result: one gets it, the other is told, neither hangs",
          "[task][as_completed]") {
    int got = 0;
    int told = 0;
    coring::run([](int& got, int& told) -> task<> {
        std::vector<task<int>> ts;
        ts.push_back(after(20ms, 7));
        auto ac = coring::as_completed(std::move(ts));
        auto take = [](coring::as_completed_set<int>& ac, int& got, int& told) -> task<> {
            try {
                got += co_await ac.next();
            } catch (const std::logic_error&) {
                ++told;
            }
        };
        task<> first = take(ac, got, told);
        task<> second = take(ac, got, told);
        co_await coring::timeout(5s, coring::gather(std::move(first), std::move(second)));
    }(got, told));
    CHECK(got == 7);
    CHECK(told == 1);
}

TEST_CASE("as_completed - awaitables other than tasks, and move-only results", "[task][as_completed]") {
    int total = 0;
    coring::run([](int& total) -> task<> {
        std::vector<coring::sleep_awaitable> sleeps;
        sleeps.push_back(coring::sleep(2ms));
        sleeps.push_back(coring::sleep(1ms));
        auto s = coring::as_completed(std::move(sleeps));
        co_await s.next();
        co_await s.next();
        std::vector<task<std::unique_ptr<int>>> ts;
        for (int i = 1; i <= 3; ++i)
            ts.push_back([](int i) -> task<std::unique_ptr<int>> { co_return std::make_unique<int>(i); }(i));
        auto ac = coring::as_completed(std::move(ts));
        while (ac.remaining() > 0) {
            std::unique_ptr<int> p = co_await ac.next();
            total += *p;
        }
    }(total));
    CHECK(total == 6);
}

// Cases from an independent review (each failed before its fix).

namespace {
task<int> records(int& ran, int v) {
    co_await coring::sleep(1ms);
    ++ran;
    co_return v;
}
} // namespace

// A1: as_completed() / wait() refuse an empty (or started) task with std::logic_error, but only after starting the
// tasks before it: those run on, uncancelled, their handles dropped (gather checks every task before starting any).
TEST_CASE("as_completed - an empty task among them is refused before any starts", "[task][as_completed]") {
    int ran = 0;
    coring::event_loop loop;
    loop.run([](int& ran) -> task<> {
        std::vector<task<int>> ts;
        ts.push_back(records(ran, 1));
        ts.push_back(task<int>{}); // empty
        bool refused = false;
        try {
            auto ac = coring::as_completed(std::move(ts));
        } catch (const std::logic_error&) {
            refused = true;
        }
        CHECK(refused);
        co_await coring::sleep(10ms);
    }(ran));
    CHECK(ran == 0);
}

// Non-task awaitables outlive their child's cancellation node unless await_owned destroys them before the task ends
// (a heap-use-after-free under Clang with ASan before the fix).

TEST_CASE("as_completed - of sleeps", "[task][as_completed]") {
    coring::run([]() -> task<> {
        std::vector<coring::sleep_awaitable> sleeps;
        sleeps.push_back(coring::sleep(1ms));
        auto s = coring::as_completed(std::move(sleeps));
        co_await s.next();
    }()); // ~as_completed_set drops the handle: the frame goes, ~sleep_awaitable reads the deleted member
}

TEST_CASE("wait - of sleeps", "[task][as_completed]") {
    coring::run([]() -> task<> {
        std::vector<coring::sleep_awaitable> sleeps;
        sleeps.push_back(coring::sleep(1ms));
        auto r = co_await coring::wait(std::move(sleeps));
        CHECK(r.done.size() == 1);
    }());
}

TEST_CASE("wait - of timeouts with a pending handle dropped", "[task][as_completed]") {
    coring::run([]() -> task<> {
        std::vector<coring::sleep_awaitable> sleeps;
        sleeps.push_back(coring::sleep(1ms));
        sleeps.push_back(coring::sleep(20ms));
        {
            auto r = co_await coring::wait(std::move(sleeps), coring::return_when::first_completed);
            CHECK(r.pending.size() == 1);
        } // the pending one is detached: its frame frees itself at its end, right after member_done
        co_await coring::sleep(40ms);
    }());
}

} // namespace test_as_completed
