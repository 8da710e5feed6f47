#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_wait {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::after;

using coring_test::fails_after;

std::vector<task<int>> three(std::chrono::milliseconds a, std::chrono::milliseconds b, std::chrono::milliseconds c) {
    std::vector<task<int>> ts;
    ts.push_back(after(a, 0));
    ts.push_back(after(b, 1));
    ts.push_back(after(c, 2));
    return ts;
}

} // namespace

TEST_CASE("wait - all_completed gives every task done, in the order they finished", "[task][wait]") {
    coring::run([]() -> task<> {
        auto r = co_await coring::wait(three(30ms, 10ms, 20ms));
        CHECK(r.done == std::vector<std::size_t>{1, 2, 0});
        CHECK(r.pending.empty());
        REQUIRE(r.tasks.size() == 3);
        const int v0 = co_await r.tasks[0];
        const int v2 = co_await r.tasks[2];
        CHECK(v0 == 0);
        CHECK(v2 == 2);
    }());
}

TEST_CASE("wait - first_completed returns at the first - the others keep running", "[task][wait]") {
    coring::run([]() -> task<> {
        coring_test::stopwatch clock;
        auto r = co_await coring::wait(three(200ms, 10ms, 300ms), coring::return_when::first_completed);
        CHECK(clock.seconds() < 0.15);
        CHECK(r.done == std::vector<std::size_t>{1});
        CHECK(r.pending == std::vector<std::size_t>{0, 2});
        CHECK_FALSE(r.tasks[0].done());
        const int v0 = co_await r.tasks[0]; // still running: it finishes
        CHECK(v0 == 0);
        r.tasks[2].cancel();
    }());
}

TEST_CASE("wait - first_exception returns at the first failure, not at a cancellation", "[task][wait]") {
    coring::run([]() -> task<> {
        std::vector<task<int>> ts;
        ts.push_back(after(300ms, 0));
        ts.push_back(after(10s, 1));
        ts.push_back(fails_after(30ms));
        ts.push_back(after(5ms, 3));
        auto r = co_await coring::wait(std::move(ts), coring::return_when::first_exception);
        CHECK(r.done == std::vector<std::size_t>{3, 2});
        CHECK(r.pending == std::vector<std::size_t>{0, 1});
        REQUIRE(r.tasks[2].exception());
        bool rethrown = false;
        try {
            (void)co_await r.tasks[2];
        } catch (const std::runtime_error&) {
            rethrown = true;
        }
        CHECK(rethrown);
        for (std::size_t i : r.pending) r.tasks[i].cancel();

        // Without a failure it waits for all; a task cancelled on its own is no failure.
        std::vector<task<int>> ok;
        ok.push_back(after(5ms, 0));
        ok.push_back(after(10s, 1));
        auto pending = coring::spawn(coring::wait(std::move(ok), coring::return_when::first_exception));
        co_await coring::sleep(20ms);
        CHECK_FALSE(pending.done());
        pending.cancel(); // the caller's cancellation cancels the tasks it started
        bool cancelled = false;
        try {
            (void)co_await pending;
        } catch (const coring::cancelled_error&) {
            cancelled = true;
        }
        CHECK(cancelled);
        for (int i = 0; i < 5; ++i) co_await coring::yield_now(); // the cancelled tasks end
        CHECK(coring::event_loop::current().task_count() == 1);   // the main task alone
    }());
}

TEST_CASE("wait - a timeout returns what is done and leaves the rest pending and running", "[task][wait]") {
    coring::run([]() -> task<> {
        coring_test::stopwatch clock;
        auto r = co_await coring::wait(three(10ms, 10s, 20ms), coring::return_when::all_completed, 60ms);
        const double took = clock.seconds();
        CHECK(took >= 0.055);
        CHECK(took < 5);
        CHECK(r.done == std::vector<std::size_t>{0, 2});
        CHECK(r.pending == std::vector<std::size_t>{1});
        CHECK_FALSE(r.tasks[1].done());
        r.tasks[1].cancel();
        auto empty = co_await coring::wait(std::vector<task<int>>{});
        CHECK(empty.tasks.empty());
        CHECK(empty.done.empty());
    }());
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
TEST_CASE("wait - an empty task among them is refused before any starts", "[task][wait]") {
    int ran = 0;
    coring::event_loop loop;
    loop.run([](int& ran) -> task<> {
        std::vector<task<int>> ts;
        ts.push_back(records(ran, 1));
        ts.push_back(task<int>{});
        bool refused = false;
        try {
            (void)co_await coring::wait(std::move(ts));
        } catch (const std::logic_error&) {
            refused = true;
        }
        CHECK(refused);
        co_await coring::sleep(10ms);
    }(ran));
    CHECK(ran == 0);
}

// Coverage the suite lacks: first_exception must not return for a task that ended with cancelled_error.
TEST_CASE("wait - first_exception is not ended by a child that was cancelled", "[task][wait]") {
    coring::run([]() -> task<> {
        auto inner = coring::spawn(coring::sleep(10s));
        std::vector<task<void>> ts;
        ts.push_back([](coring::join_handle<void>& h) -> task<void> { co_await h; }(inner)); // ends cancelled
        ts.push_back([]() -> task<void> { co_await coring::sleep(30ms); }());
        auto w = coring::spawn(coring::wait(std::move(ts), coring::return_when::first_exception));
        co_await coring::sleep(5ms);
        inner.cancel();
        co_await coring::sleep(5ms);
        CHECK_FALSE(w.done()); // the cancelled child is no failure
        auto r = co_await w;
        CHECK(r.done == std::vector<std::size_t>{0, 1});
    }());
}

TEST_CASE("wait - the timeout counts from the await, not from the call that made the awaitable", "[task][wait]") {
    coring::run([]() -> task<> {
        // Made, then left unawaited for longer than its timeout: counted from the call, it would return at once with
        // both pending. Its tasks start at the await, and both finish well inside the timeout from there.
        auto waiting = coring::wait(three(10ms, 20ms, 30ms), coring::return_when::all_completed, 2s);
        co_await coring::sleep(2100ms);
        coring_test::stopwatch clock;
        auto r = co_await std::move(waiting);
        CHECK(clock.seconds() < 1.5);
        CHECK(r.done == std::vector<std::size_t>{0, 1, 2});
        CHECK(r.pending.empty());
    }());
}

} // namespace test_wait
