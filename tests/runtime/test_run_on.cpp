#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test_run_on {

using namespace std::chrono_literals;
using coring::task;

namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int round_trips = 2000;
constexpr int race_calls = 2000;
#else
constexpr int round_trips = 20000;
constexpr int race_calls = 10000;
#endif

// Catch is not thread-safe: loop threads only count what went wrong, the test checks after run().
std::atomic<int> wrong_loop{0};

void expect_loop(coring::event_loop* want) {
    if (coring::event_loop::try_current() != want) wrong_loop.fetch_add(1);
}

task<std::uintptr_t> where_after_sleep() {
    co_await coring::sleep(1ms);
    co_return reinterpret_cast<std::uintptr_t>(&coring::event_loop::current());
}

} // namespace

TEST_CASE("run_on - a ping-pong of round trips runs f on the target and resumes on the caller's loop",
          "[runtime][run_on]") {
    wrong_loop = 0;
    int final_value = 0;
    coring::runtime rt(2);
    coring::event_loop* l0 = &rt.loop(0);
    coring::event_loop* l1 = &rt.loop(1);
    rt.run([&](std::size_t i) -> task<> {
        if (i == 1) co_return; // loop 1 keeps serving until loop 0 is done
        auto add_one = [l1](int x) {
            expect_loop(l1);
            return x + 1;
        };
        int v = 0;
        for (int k = 0; k < round_trips; ++k) {
            v = co_await coring::run_on(*l1, add_one, v);
            expect_loop(l0);
        }
        final_value = v;
    });
    CHECK(final_value == round_trips);
    CHECK(wrong_loop.load() == 0);
}

TEST_CASE("run_on - values of every kind and exceptions come back", "[runtime][run_on]") {
    wrong_loop = 0;
    static int remote_int = 41; // touched on loop 1 only until run() returns
    struct results {
        int v = 0;
        std::unique_ptr<int> moved;
        int* ref = nullptr;
        std::uintptr_t task_loop = 0;
        std::uintptr_t task_overload_loop = 0;
        bool void_ran = false;
        std::string error;
        int local = 0;
    } r;
    coring::runtime rt(2);
    coring::event_loop* l0 = &rt.loop(0);
    coring::event_loop* l1 = &rt.loop(1);
    rt.run([&](std::size_t i) -> task<> {
        if (i == 1) co_return;
        auto value = [] { return 7; };
        r.v = co_await coring::run_on(*l1, value);
        auto make = [](int x) { return std::make_unique<int>(x); };
        r.moved = co_await coring::run_on(*l1, make, 9);
        auto refer = []() -> int& {
            ++remote_int;
            return remote_int;
        };
        int& ref = co_await coring::run_on(*l1, refer);
        r.ref = &ref;
        auto as_task = [] { return where_after_sleep(); };
        r.task_loop = co_await coring::run_on(*l1, as_task);
        r.task_overload_loop = co_await coring::run_on(*l1, where_after_sleep());
        bool* flag = &r.void_ran;
        auto set_flag = [flag, l1] {
            expect_loop(l1);
            *flag = true;
        };
        co_await coring::run_on(*l1, set_flag);
        auto boom = []() -> int { throw std::runtime_error("remote boom"); };
        try {
            (void)co_await coring::run_on(*l1, boom);
        } catch (const std::runtime_error& e) {
            r.error = e.what();
        }
        auto here = [l0] {
            expect_loop(l0);
            return 3;
        };
        r.local = co_await coring::run_on(*l0, here);
        expect_loop(l0);
    });
    CHECK(r.v == 7);
    REQUIRE(r.moved);
    CHECK(*r.moved == 9);
    CHECK(r.ref == &remote_int);
    CHECK(remote_int == 42);
    CHECK(r.task_loop == reinterpret_cast<std::uintptr_t>(&rt.loop(1)));
    CHECK(r.task_overload_loop == reinterpret_cast<std::uintptr_t>(&rt.loop(1)));
    CHECK(r.void_ran);
    CHECK(r.error == "remote boom");
    CHECK(r.local == 3);
    CHECK(wrong_loop.load() == 0);
}

TEST_CASE("run_on - cancelling the caller cancels the remote task and waits for it", "[runtime][run_on]") {
    wrong_loop = 0;
    std::atomic<int> remote_started{0};
    std::atomic<int> remote_cancelled{0};
    bool caller_cancelled = false;
    bool waited_for_remote = false;
    bool after_cancelled = false;
    int remote_ran = 0; // loop 1 only, read after run()
    coring::runtime rt(2);
    coring::event_loop* l0 = &rt.loop(0);
    coring::event_loop* l1 = &rt.loop(1);
    rt.run([&](std::size_t i) -> task<> {
        if (i == 1) co_return;
        auto sleeper = [&remote_started, &remote_cancelled]() -> task<> {
            remote_started.fetch_add(1);
            try {
                co_await coring::sleep(1h);
            } catch (const coring::cancelled_error&) {
                remote_cancelled.fetch_add(1);
                throw;
            }
        };
        // The deadline comes once the remote task runs: one that has not started yet is withdrawn, not cancelled
        // (the last part of this test), and on a slow machine 5 ms may pass before loop 1 takes it.
        auto started_then_wait = [&remote_started, l1, &sleeper]() -> task<> {
            auto h = coring::spawn(coring::run_on(*l1, sleeper));
            while (remote_started.load() == 0) {
                co_await coring::sleep(1ms);
            }
            co_await coring::sleep(5ms);
            h.cancel();
            co_await h;
        };
        try {
            co_await started_then_wait();
        } catch (const coring::cancelled_error&) {
            caller_cancelled = true;
        }
        // run_on returned only after the remote task ended.
        waited_for_remote = remote_cancelled.load() == 1;
        expect_loop(l0);
        // A task already cancelled sends nothing.
        auto counted = [&remote_ran] { ++remote_ran; };
        auto h = coring::spawn([](coring::event_loop* target, decltype(counted) f) -> task<> {
            try {
                co_await coring::sleep(1h);
            } catch (const coring::cancelled_error&) {}
            co_await coring::run_on(*target, f);
        }(l1, counted));
        co_await coring::yield_now();
        h.cancel();
        try {
            co_await h;
        } catch (const coring::cancelled_error&) {
            after_cancelled = true;
        }
    });
    CHECK(caller_cancelled);
    CHECK(waited_for_remote);
    CHECK(remote_started.load() == 1);
    CHECK(remote_cancelled.load() == 1);
    CHECK(after_cancelled);
    CHECK(remote_ran == 0);
    CHECK(wrong_loop.load() == 0);
}

TEST_CASE("run_on - cancellation racing completion runs each call at most once and loses no result",
          "[runtime][run_on]") {
    wrong_loop = 0;
    std::vector<int> runs(race_calls, 0);     // loop 1 only
    std::vector<int> returned(race_calls, 0); // loop 0 only
    int cancelled = 0;
    coring::runtime rt(2);
    coring::event_loop* l0 = &rt.loop(0);
    coring::event_loop* l1 = &rt.loop(1);
    rt.run([&](std::size_t i) -> task<> {
        if (i == 1) co_return;
        std::mt19937 rng(12345);
        std::uniform_int_distribution<int> us(0, 50);
        for (int id = 0; id < race_calls; ++id) {
            std::vector<int>* r = &runs;
            auto body = [r, id, l1]() -> task<int> {
                expect_loop(l1);
                ++(*r)[static_cast<std::size_t>(id)];
                if (id % 3 == 0) co_await coring::sleep(std::chrono::microseconds(id % 40));
                co_return id;
            };
            try {
                const int v = co_await coring::timeout(std::chrono::microseconds(us(rng)), coring::run_on(*l1, body));
                if (v == id) ++returned[static_cast<std::size_t>(id)];
            } catch (const coring::timeout_error&) {
                ++cancelled;
            }
            expect_loop(l0);
        }
    });
    int more_than_once = 0, returned_without_run = 0, ran = 0, got = 0;
    for (int id = 0; id < race_calls; ++id) {
        const auto k = static_cast<std::size_t>(id);
        if (runs[k] > 1) ++more_than_once;
        if (returned[k] == 1 && runs[k] != 1) ++returned_without_run;
        ran += runs[k];
        got += returned[k];
    }
    CHECK(more_than_once == 0);
    CHECK(returned_without_run == 0);
    CHECK(got + cancelled == race_calls);
    CHECK(got <= ran);
    CHECK(wrong_loop.load() == 0);
    INFO("returned " << got << ", cancelled " << cancelled << ", ran " << ran);
    CHECK(got > 0);
}

TEST_CASE("run_on - stopping the runtime during a remote call drains both loops", "[runtime][run_on]") {
    std::atomic<int> started{0};
    std::atomic<int> caller_cancelled{0};
    coring::runtime rt(2);
    coring::event_loop* l1 = &rt.loop(1);
    coring_test::stderr_capture err;
    std::thread stopper([&] {
        while (started.load() == 0) std::this_thread::sleep_for(1ms);
        std::this_thread::sleep_for(10ms);
        rt.stop();
    });
    coring_test::stopwatch sw;
    rt.run([&](std::size_t i) -> task<> {
        if (i == 1) co_return;
        auto forever = [&started]() -> task<> {
            started.fetch_add(1);
            co_await coring::sleep(1h);
        };
        try {
            co_await coring::run_on(*l1, forever);
        } catch (const coring::cancelled_error&) {
            caller_cancelled.fetch_add(1);
        }
    });
    stopper.join();
    err.restore();
    CHECK(caller_cancelled.load() == 1);
    CHECK(sw.seconds() < 5.0);
    CHECK_FALSE(coring_test::contains(err.text(), "did not finish"));
}

TEST_CASE("run_on - a loop that has exited gives runtime_error", "[runtime][run_on]") {
    std::string error;
    int cancelled_at_start = 0;
    coring::runtime rt(2);
    coring::event_loop* l1 = &rt.loop(1);
    rt.run([&](std::size_t i) -> task<> {
        if (i == 1) co_return;
        coring::runtime::current()->stop();
        try {
            co_await coring::sleep(1h);
        } catch (const coring::cancelled_error&) {}
        // Loop 1 drains (a body arriving now is cancelled at its start) and then exits (a start it never ran is
        // rejected, a later one refused): shielded calls reach it until it is gone.
        auto noop = [] {};
        for (int n = 0; n < 5000 && error.empty(); ++n) {
            try {
                co_await coring::shield(coring::run_on(*l1, noop));
            } catch (const coring::cancelled_error&) {
                ++cancelled_at_start;
            } catch (const std::runtime_error& e) {
                error = e.what();
            }
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    });
    INFO("cancelled at start " << cancelled_at_start);
    CHECK(coring_test::contains(error, "the target loop has exited"));
}

} // namespace test_run_on
