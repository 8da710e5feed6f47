// Debug mode (CORING_DEBUG=1, coring::set_debug): never-awaited tasks and deadlocks are reported on stderr.
#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <stdlib.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_debug_mode {

using namespace std::chrono_literals;
using coring::task;

namespace {

constexpr bool traced = coring::detail::task_trace;

/// Turns debug mode on (or off) for one test, and back to what the environment says after it.
struct debug_scope {
    explicit debug_scope(bool on) { coring::set_debug(on); }
    debug_scope(const debug_scope&) = delete;
    debug_scope& operator=(const debug_scope&) = delete;
    ~debug_scope() { coring::detail::debug_state.store(-1); }
};

const unsigned first_line_of_child = __LINE__ + 1;
task<int> child() {
    co_await coring::sleep(1ms);
    co_return 1;
}
const unsigned last_line_of_child = __LINE__ - 1;

task<> waits_forever(coring::event& e) { co_await e.wait(); }

/// Once cancelled (which stays so), gather and timeout refuse to start the tasks they were given.
task<> combinators_after_cancellation(int& refused) {
    try {
        co_await coring::sleep(1h);
    } catch (const coring::cancelled_error&) {}
    try {
        co_await coring::gather(child(), child());
    } catch (const coring::cancelled_error&) {
        ++refused;
    }
    try {
        co_await coring::timeout(1s, child());
    } catch (const coring::cancelled_error&) {
        ++refused;
    }
}

} // namespace

TEST_CASE("debug mode - a task destroyed without being awaited is reported with its coroutine", "[debug]") {
    debug_scope debug(true);
    coring_test::stderr_capture err;
    {
        auto t = child(); // created, never awaited: no loop needed to notice
    }
    err.restore();
    const std::string text = err.text();
    INFO(text);
    const std::string head = "coring: a task was destroyed without ever being awaited: ";
    REQUIRE(text.rfind(head, 0) == 0);
    if constexpr (traced) {
        // GCC gives the qualified name and the line the definition closes on; Clang 14 the bare name and the line it
        // opens on.
        const std::string file = std::string(", defined at ") + __FILE__ + ":";
        CHECK((text == head + "test_debug_mode::child" + file + std::to_string(last_line_of_child) + "\n" ||
               text == head + "child" + file + std::to_string(first_line_of_child) + "\n"));
    } else {
        CHECK(text == head + "(where it is defined is unknown: build with CORING_TASK_TRACE=1)\n");
    }
}

TEST_CASE("debug mode - off, a task destroyed without being awaited is not reported", "[debug]") {
    debug_scope debug(false);
    coring_test::stderr_capture err;
    { auto t = child(); }
    err.restore();
    CHECK(err.text().empty());
}

TEST_CASE("debug mode - tasks that were awaited, spawned, gathered, timed or cancelled before they ran are not "
          "reported",
          "[debug]") {
    debug_scope debug(true);
    coring_test::stderr_capture err;
    coring::run([]() -> task<> {
        // Never co_await inside a Catch macro: it may evaluate its operand twice.
        auto a = child();
        int sum = co_await std::move(a);
        sum += co_await child();
        auto h = coring::spawn(child());
        sum += co_await h;
        auto never_runs = coring::spawn(child()); // cancelled before its first turn
        never_runs.cancel();
        try {
            co_await never_runs;
        } catch (const coring::cancelled_error&) {
            sum += 10;
        }
        auto [x, y] = co_await coring::gather(child(), child());
        sum += x + y;
        sum += co_await coring::timeout(1s, child());
        CHECK(sum == 16);
        coring::task_group g;
        g.spawn(child());
        co_await g.join();
    }());
    err.restore();
    CHECK(err.text().empty());
}

TEST_CASE("debug mode - tasks a combinator refused to start in a cancelled task are not reported", "[debug]") {
    debug_scope debug(true);
    coring_test::stderr_capture err;
    int refused = 0;
    coring::run([](int& refused) -> task<> {
        auto h = coring::spawn(combinators_after_cancellation(refused));
        co_await coring::yield_now(); // it is asleep now
        h.cancel();
        co_await h;
        // A gather with a limit that is cancelled leaves the tasks it had not started yet: dropped, not reported.
        std::vector<task<int>> ts;
        for (int i = 0; i < 4; ++i) ts.push_back(child());
        auto limited = coring::spawn(coring::gather(std::move(ts), {.limit = 1}));
        co_await coring::yield_now();
        limited.cancel();
        try {
            co_await limited;
        } catch (const coring::cancelled_error&) {
            ++refused;
        }
        coring::task_group g;
        g.cancel();
        try {
            (void)g.spawn(child());
        } catch (const std::logic_error&) {
            ++refused;
        }
        co_await g.join();
    }(refused));
    err.restore();
    CHECK(refused == 4);
    CHECK(err.text().empty());
}

TEST_CASE("debug mode - CORING_DEBUG=1 in the environment turns it on", "[debug]") {
    debug_scope reset(false);
    ::setenv("CORING_DEBUG", "1", 1);
    coring::detail::debug_state.store(-1); // read the environment again
    CHECK(coring::debug_enabled());
    ::setenv("CORING_DEBUG", "0", 1);
    coring::detail::debug_state.store(-1);
    CHECK_FALSE(coring::debug_enabled());
    ::unsetenv("CORING_DEBUG");
    coring::detail::debug_state.store(-1);
    CHECK_FALSE(coring::debug_enabled());
}

TEST_CASE("debug mode - a deadlocked run() prints what every task waits for", "[debug]") {
    debug_scope debug(true);
    coring_test::stderr_capture err;
    coring::event e;
    CHECK_THROWS_AS(coring::run(waits_forever(e)), std::runtime_error);
    err.restore();
    const std::string text = err.text();
    INFO(text);
    CHECK(text.rfind("coring: deadlock in run(); the tasks and what they wait for (debug mode):\ncoring: 1 task\n",
                     0) == 0);
    CHECK(text.find("waiting for event::wait") != std::string::npos);
}

} // namespace test_debug_mode
