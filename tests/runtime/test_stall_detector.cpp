// The stall detector (loop_options::slow_callback): a resume that holds the loop too long is reported with its task.
#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

namespace test_stall_detector {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// Keeps the thread busy for `d` without yielding, as a blocking call or a long computation would.
void compute_for(std::chrono::milliseconds d) {
    const auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {}
}

unsigned line_of_wait = 0;

task<> busy_then_sleep(std::chrono::milliseconds d) {
    compute_for(d);
    line_of_wait = __LINE__ + 1;
    co_await coring::sleep(1ms);
}

task<> busy(std::chrono::milliseconds d, int times) {
    for (int i = 0; i < times; ++i) {
        compute_for(d);
        co_await coring::yield_now();
    }
}

task<> compute(std::chrono::milliseconds d) {
    compute_for(d);
    co_return;
}

std::size_t count_of(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

} // namespace

TEST_CASE("stall detector - a task that computes for 200 ms is reported with its id and spawn site", "[stall]") {
    coring::event_loop loop; // slow_callback: 100 ms by default
    coring_test::stderr_capture err;
    const unsigned line = __LINE__ + 2;
    loop.run([]() -> task<> {
        auto h = coring::spawn(busy_then_sleep(200ms));
        co_await h;
    }());
    err.restore();
    const std::string text = err.text();
    INFO(text);
    CHECK(loop.stats().stalls >= 1);
    CHECK(text.rfind("coring: task #2 (spawned at " + std::string(__FILE__) + ":" + std::to_string(line) + " in ", 0) ==
          0);
    CHECK(text.find(") held the loop for at least ") != std::string::npos);
    CHECK(text.find(" ms without yielding (loop_options::slow_callback is 100 ms)") != std::string::npos);
    // (GCC qualifies the coroutine's name, Clang 14 does not.)
    if (coring::detail::task_trace) {
        CHECK(text.find("; it now waits at " + std::string(__FILE__) + ":" + std::to_string(line_of_wait) + " in ") !=
              std::string::npos);
        CHECK(text.find("busy_then_sleep\n") != std::string::npos);
    }
    // The figure is a lower bound, off by at most a quarter of the threshold (and what the machine adds).
    const std::size_t at = text.find("at least ");
    REQUIRE(at != std::string::npos);
    const int ms = std::stoi(text.substr(at + 9));
    CHECK(ms >= 100);
    CHECK(ms <= 1200); // 200 ms of computing, and whatever a loaded machine (a sanitizer, a VM) adds
}

TEST_CASE("stall detector - resumes of 10 ms are not reported", "[stall]") {
    coring::event_loop loop;
    coring_test::stderr_capture err;
    loop.run(busy(10ms, 10));
    err.restore();
    CHECK(err.text().empty());
    CHECK(loop.stats().stalls == 0);
}

TEST_CASE("stall detector - a task that finishes in the stall is still named", "[stall]") {
    coring::event_loop loop;
    coring_test::stderr_capture err;
    const unsigned line = __LINE__ + 2;
    loop.run([]() -> task<> {
        coring::spawn(compute(200ms)); // detached: its frame is gone by the time the report is written
        co_await coring::sleep(300ms);
    }());
    err.restore();
    const std::string text = err.text();
    INFO(text);
    CHECK(loop.stats().stalls >= 1);
    CHECK(text.rfind("coring: task #2 (spawned at " + std::string(__FILE__) + ":" + std::to_string(line) + " in ", 0) ==
          0);
    CHECK(text.find("; it finished in that resume\n") != std::string::npos);
}

TEST_CASE("stall detector - reports are one per second at most, and the next one counts those left out", "[stall]") {
    coring::loop_options o;
    o.slow_callback = 50ms;
    coring::event_loop loop(o);
    coring_test::stderr_capture err;
    loop.run([]() -> task<> {
        co_await busy(150ms, 2);        // two stalls: the second within the second
        co_await coring::sleep(1100ms); // then a quiet second
        co_await busy(150ms, 1);        // reported, with the one (or more) left out
    }());
    err.restore();
    const std::string text = err.text();
    INFO(text);
    CHECK(loop.stats().stalls >= 3);
    CHECK(count_of(text, "held the loop") == 2);
    CHECK(count_of(text, "(loop_options::slow_callback is 50 ms)") == 2);
    CHECK(count_of(text, " more since the last report, not shown\n") == 1);
}

TEST_CASE("stall detector - a stall deep in a chain of awaited tasks or in a gather child names the spawned task",
          "[stall]") {
    coring::event_loop loop;
    coring_test::stderr_capture err;
    const unsigned line = __LINE__ + 2;
    loop.run([]() -> task<> {
        auto h = coring::spawn([]() -> task<> {
            co_await coring::sleep(1ms);
            co_await busy_then_sleep(200ms);                               // a task it awaits computes
            co_await coring::sleep(1100ms);                                // (past the one-line-per-second limit)
            co_await coring::gather(busy_then_sleep(200ms), busy(1ms, 1)); // a gather's child computes
        }());
        co_await h;
    }());
    err.restore();
    const std::string text = err.text();
    INFO(text);
    CHECK(loop.stats().stalls >= 2);
    const std::string who =
        "coring: task #2 (spawned at " + std::string(__FILE__) + ":" + std::to_string(line) + " in ";
    CHECK(count_of(text, who) == 2);
    CHECK(text.find("coring cannot tie") == std::string::npos);
}

TEST_CASE("stall detector - zero turns it off and a negative threshold is refused", "[stall]") {
    {
        coring::loop_options o;
        o.slow_callback = 0ms;
        coring::event_loop loop(o);
        coring_test::stderr_capture err;
        loop.run(busy(150ms, 1));
        err.restore();
        CHECK(err.text().empty());
        CHECK(loop.stats().stalls == 0);
    }

    coring::loop_options bad;
    bad.slow_callback = -1ms;
    CHECK_THROWS_AS(coring::event_loop(bad), std::invalid_argument);
    bad.slow_callback = std::chrono::milliseconds::max(); // would overflow the watchdog's nanoseconds
    CHECK_THROWS_AS(coring::event_loop(bad), std::invalid_argument);
}

TEST_CASE("stall detector - loops on other threads are watched at the same time", "[stall]") {
    // Two loops, two threads, one watchdog: each stall is blamed on its own loop.
    std::uint64_t stalls[2] = {};
    auto body = [&](int i) {
        coring::loop_options o;
        o.slow_callback = i == 0 ? 50ms : 100ms;
        coring::event_loop loop(o);
        loop.run(busy(i == 0 ? 150ms : 5ms, 3));
        stalls[i] = loop.stats().stalls;
    };
    coring_test::stderr_capture err;
    std::thread other(body, 1);
    body(0);
    other.join();
    err.restore();
    const std::string text = err.text();
    INFO(text);
    CHECK(stalls[0] >= 3);
    CHECK(stalls[1] == 0);
    CHECK(count_of(text, "(loop_options::slow_callback is 50 ms)") >= 1);
    CHECK(count_of(text, "(loop_options::slow_callback is 100 ms)") == 0);
}

} // namespace test_stall_detector
