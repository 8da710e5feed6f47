#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/detail/timer_queue.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <limits>
#include <random>
#include <vector>

namespace test_sleep {

using namespace std::chrono_literals;
using coring::task;
using clk = std::chrono::steady_clock;

namespace {

task<> sleep_until_and_record(clk::time_point t0, int ms, std::vector<int>& order) {
    co_await coring::sleep_until(t0 + std::chrono::milliseconds(ms));
    order.push_back(ms);
}

} // namespace

TEST_CASE("sleep - sleepers wake in deadline order on every ring setup", "[sleep]") {
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            std::vector<int> order;
            coring::event_loop loop(setup.options);
            loop.run([](std::vector<int>& o) -> task<> {
                // Deadlines from one instant: each sleeper measuring its own from when it starts made the order
                // depend on how fast seven tasks start (over 5 ms apart under an emulator).
                const auto t0 = clk::now();
                std::vector<task<>> ts;
                const int ms[] = {40, 10, 30, 0, 20, 50, 5};
                for (int i = 0; i < 7; ++i) ts.push_back(sleep_until_and_record(t0, ms[i], o));
                co_await coring::gather(std::move(ts));
            }(order));
            CHECK(order == std::vector<int>{0, 5, 10, 20, 30, 40, 50});
        }
    }
}

TEST_CASE("sleep - never wakes before its deadline", "[sleep]") {
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            coring::event_loop loop(setup.options);
            loop.run([]() -> task<> {
                // 300 ms: a far deadline (it once came from the coarse clock, and could be early on a VM).
                for (auto d : {1ms, 7ms, 15ms, 30ms, 300ms}) {
                    const auto t0 = clk::now();
                    co_await coring::sleep(d);
                    const auto slept = clk::now() - t0;
                    CHECK(slept >= d);
                    CHECK(slept < d + 500ms); // generous: the machine is shared
                }
                const auto deadline = clk::now() + 12ms;
                co_await coring::sleep_until(deadline);
                CHECK(clk::now() >= deadline);
            }());
        }
    }
}

TEST_CASE("sleep - zero and negative durations yield once, past deadlines return promptly", "[sleep]") {
    coring::run([]() -> task<> {
        std::vector<int> order;
        auto other = coring::spawn([](std::vector<int>& o) -> task<> {
            o.push_back(1);
            co_return;
        }(order));
        co_await coring::sleep(0ms); // lets `other` run first
        order.push_back(2);
        co_await coring::sleep(-5s);
        co_await coring::sleep_until(clk::now() - 1h);
        CHECK(order == std::vector<int>{1, 2});
        co_await other;
    }());
}

TEST_CASE("sleep - durations in any unit and clock, huge ones saturate instead of overflowing", "[sleep]") {
    coring::run([]() -> task<> {
        co_await coring::sleep(std::chrono::duration<double>(0.002));
        co_await coring::sleep(std::chrono::microseconds(1500));
        co_await coring::sleep_until(std::chrono::system_clock::now() + 2ms);
        // "Forever": must not overflow into the past (which would wake at once); cancel it to finish.
        for (auto forever : {std::chrono::hours::max(), std::chrono::hours(std::numeric_limits<int>::max())}) {
            auto h = coring::spawn(coring::sleep(forever));
            co_await coring::sleep(5ms);
            CHECK_FALSE(h.done());
            h.cancel();
            CHECK_THROWS_AS(co_await h, coring::cancelled_error);
        }
        auto nanos = coring::spawn(coring::sleep(std::chrono::nanoseconds::max()));
        co_await coring::sleep(2ms);
        CHECK_FALSE(nanos.done());
        nanos.cancel();
        CHECK_THROWS_AS(co_await nanos, coring::cancelled_error);
    }());
}

TEST_CASE("sleep - a cancelled sleeper leaves the timer queue and wakes at once", "[sleep][cancel]") {
    coring::event_loop loop;
    loop.run([]() -> task<> {
        coring_test::stopwatch sw;
        std::vector<coring::join_handle<void>> hs;
        for (int i = 0; i < 1000; ++i) hs.push_back(coring::spawn(coring::sleep(std::chrono::seconds(10 + i % 7))));
        co_await coring::yield_now();
        for (auto& h : hs) h.cancel();
        int cancelled = 0;
        for (auto& h : hs) {
            try {
                co_await h;
            } catch (const coring::cancelled_error&) {
                ++cancelled;
            }
        }
        CHECK(cancelled == 1000);
        CHECK(sw.seconds() < 5.0);
    }());
    CHECK(loop.in_flight() == 0);
}

TEST_CASE("sleep - one hundred thousand sleepers use no SQE each", "[sleep]") {
    coring::event_loop loop;
    loop.run([]() -> task<> {
        std::vector<coring::join_handle<void>> hs;
        hs.reserve(100'000);
        for (int i = 0; i < 100'000; ++i) hs.push_back(coring::spawn(coring::sleep(20ms)));
        for (auto& h : hs) co_await h;
    }());
    // With EXT_ARG waits no timer reaches the kernel at all; without, one IORING_OP_TIMEOUT per distinct earliest
    // deadline. Either way nowhere near one per sleeper.
    CHECK(loop.stats().sqes < 100);
}

TEST_CASE("timer_queue - pops in deadline order with runs and heap, and removes from both", "[sleep][timer_queue]") {
    using coring::detail::timer_node;
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> dist(0, 1'000'000);
    const auto base = clk::time_point{} + 1h;
    std::vector<timer_node> nodes(20'000);
    coring::detail::timer_queue q;
    // Half monotonic per "duration" (they land in runs), half random (they spill into the heap).
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        nodes[i].deadline = i % 2 ? base + std::chrono::microseconds(dist(rng))
                                  : base + std::chrono::microseconds(static_cast<long>(i) * 3 + (i % 6) * 100'000);
        q.insert(&nodes[i]);
    }
    CHECK(q.size() == nodes.size());
    // Remove every third node.
    std::vector<clk::time_point> expected;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        if (i % 3 == 0) q.remove(&nodes[i]);
        else expected.push_back(nodes[i].deadline);
    }
    std::sort(expected.begin(), expected.end());
    CHECK(q.size() == expected.size());
    std::vector<clk::time_point> popped;
    while (timer_node* n = q.pop_due(clk::time_point::max())) {
        CHECK_FALSE(n->linked());
        popped.push_back(n->deadline);
    }
    CHECK(popped == expected);
    CHECK(q.empty());
}

TEST_CASE("timer_queue - pop_due stops at the first deadline in the future", "[sleep][timer_queue]") {
    using coring::detail::timer_node;
    coring::detail::timer_queue q;
    timer_node a, b;
    const auto now = clk::now();
    a.deadline = now - 1ms;
    b.deadline = now + 1h;
    q.insert(&b);
    q.insert(&a);
    CHECK(q.earliest() == a.deadline);
    CHECK(q.pop_due(now) == &a);
    CHECK(q.pop_due(now) == nullptr);
    CHECK(q.size() == 1);
    q.remove(&b);
    q.remove(&b); // removing twice is harmless
    CHECK(q.empty());
}

// Regression: the overflow limit was computed in the duration's own Rep, which a narrow Rep cannot hold: a 5 us sleep
// with an int count slept forever.
TEST_CASE("sleep - durations with narrow or unsigned counts convert exactly", "[sleep]") {
    using coring::detail::to_clock_duration;
    using namespace std::chrono;
    CHECK(to_clock_duration(duration<int, std::micro>(5)) == 5us);
    CHECK(to_clock_duration(duration<std::int16_t, std::ratio<60>>(1)) == 60s);
    CHECK(to_clock_duration(duration<unsigned, std::milli>(7)) == 7ms);
    CHECK(to_clock_duration(duration<std::uint64_t, std::ratio<3600>>(~std::uint64_t{0})) == nanoseconds::max());
    CHECK(to_clock_duration(duration<int, std::ratio<1, 1'000'000'000'000>>(1500)) == 2ns); // rounded up
    CHECK(to_clock_duration(duration<double>(-1.0)) == -1s);
    coring::run([]() -> task<> {
        coring_test::stopwatch sw;
        co_await coring::sleep(duration<int, std::micro>(500));
        co_await coring::sleep(duration<short, std::milli>(2));
        CHECK(sw.seconds() < 5.0);
    }());
}

// Regression: deadline arithmetic overflowed for time_point::min(), freezing every timer and spinning the loop.
TEST_CASE("sleep - extreme time points neither overflow nor freeze the other timers", "[sleep]") {
    coring::event_loop loop;
    loop.run([]() -> task<> {
        auto past = coring::spawn(coring::sleep_until(clk::time_point::min()));
        auto far_past = coring::spawn(coring::sleep_until(std::chrono::system_clock::time_point::min()));
        coring_test::stopwatch sw;
        co_await coring::sleep(10ms); // must fire on time despite the others
        CHECK(sw.seconds() < 5.0);
        CHECK(past.done());
        CHECK(far_past.done());
        CHECK_THROWS_AS(co_await coring::timeout_at(std::chrono::system_clock::time_point::min(), coring::sleep(1s)),
                        coring::timeout_error);
        CHECK(sw.seconds() < 5.0);
    }());
    CHECK(loop.stats().enters < 1000);
}

TEST_CASE("sleep - far deadlines are never earlier than now plus the duration", "[sleep]") {
    // deadline_after reads the precise clock: a deadline from the coarse clock plus two ticks was early whenever the
    // coarse clock lagged by more, as it does when a tick comes late on a virtual machine (in a QEMU guest this case
    // saw 2.5 us, and a 300 ms sleep ended 4.5 ms early). So it is now + d for a "now" between the reads around the
    // call. coarse_deadline_after may be early then, but is never more than its two ticks late.
    const auto tick = coring::detail::coarse_clock::resolution();
    const auto d = std::chrono::milliseconds(300);
    for (int i = 0; i < 200'000; ++i) {
        const auto before = clk::now();
        const auto deadline = coring::detail::deadline_after(d);
        const auto coarse = coring::detail::coarse_deadline_after(d);
        const auto after = clk::now();
        if (deadline < before + d) {
            FAIL("deadline_after(300ms) was "
                 << std::chrono::duration_cast<std::chrono::nanoseconds>(before + d - deadline).count() << " ns early");
        }
        if (deadline > after + d) {
            FAIL("deadline_after(300ms) was "
                 << std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - after - d).count() << " ns late");
        }
        if (tick != clk::duration::max() && coarse > after + d + 2 * tick) {
            FAIL("coarse_deadline_after(300ms) was "
                 << std::chrono::duration_cast<std::chrono::nanoseconds>(coarse - after - d).count() << " ns late");
        }
    }
    SUCCEED();
}

} // namespace test_sleep
