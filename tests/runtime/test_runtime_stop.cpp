#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

namespace test_runtime_stop {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// Every loop: a task that sleeps for an hour, one waiting on a blocking job, and local traffic, until cancelled.
task<> busy_until_cancelled(std::atomic<int>* cancelled, std::atomic<int>* started) {
    coring::task_group g;
    g.spawn([](std::atomic<int>* c) -> task<> {
        try {
            co_await coring::sleep(1h);
        } catch (const coring::cancelled_error&) {
            c->fetch_add(1);
            throw;
        }
    }(cancelled));
    g.spawn([]() -> task<> {
        auto nap = [] { std::this_thread::sleep_for(20ms); };
        for (;;) co_await coring::to_thread(nap);
    }());
    g.spawn([]() -> task<> {
        coring::queue<int> q(4);
        for (int i = 0;; ++i) {
            co_await q.push(i);
            (void)co_await q.pop();
            co_await coring::yield_now();
        }
    }());
    started->fetch_add(1);
    co_await g.join();
}

} // namespace

TEST_CASE("runtime stop - stop from a foreign thread cancels and drains every loop", "[runtime]") {
    std::atomic<int> cancelled{0}, started{0};
    coring::runtime rt(3);
    coring_test::stderr_capture err;
    std::thread stopper([&] {
        while (started.load() < 3) std::this_thread::sleep_for(1ms);
        std::this_thread::sleep_for(30ms);
        rt.stop();
    });
    coring_test::stopwatch sw;
    rt.run([&](std::size_t) -> task<> { co_await busy_until_cancelled(&cancelled, &started); });
    stopper.join();
    err.restore();
    CHECK(cancelled.load() == 3);
    CHECK(sw.seconds() < 5.0);
    CHECK_FALSE(coring_test::contains(err.text(), "did not finish"));
    CHECK_FALSE(coring_test::contains(err.text(), "leaked"));
}

TEST_CASE("runtime stop - SIGTERM to the process stops the runtime and the signal mask is restored", "[runtime]") {
    sigset_t before, after;
    ::pthread_sigmask(SIG_SETMASK, nullptr, &before);
    std::atomic<int> cancelled{0}, started{0};
    {
        // Blocked before the helper thread starts, so that it inherits the mask: a process-directed SIGTERM must not
        // be delivered to it (as every thread of a program that uses stop_signals should block them).
        sigset_t term;
        ::sigemptyset(&term);
        ::sigaddset(&term, SIGTERM);
        ::pthread_sigmask(SIG_BLOCK, &term, nullptr);
    }
    std::thread killer([&] {
        while (started.load() < 2) std::this_thread::sleep_for(1ms);
        std::this_thread::sleep_for(20ms);
        // Process-directed: it stays pending, blocked everywhere, until the thread in run() reads it.
        ::kill(::getpid(), SIGTERM);
    });
    coring_test::stopwatch sw;
    coring::run_on_cores(2, [&](std::size_t) -> task<> { co_await busy_until_cancelled(&cancelled, &started); });
    killer.join();
    ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
    ::pthread_sigmask(SIG_SETMASK, nullptr, &after);
    CHECK(cancelled.load() == 2);
    CHECK(sw.seconds() < 5.0);
    CHECK(::sigismember(&after, SIGTERM) == ::sigismember(&before, SIGTERM));
    sigset_t pending;
    ::sigpending(&pending);
    CHECK_FALSE(::sigismember(&pending, SIGTERM));
}

TEST_CASE("runtime stop - stop before run cancels every main at its start", "[runtime]") {
    std::atomic<int> ran{0};
    coring::runtime rt(2);
    rt.stop();
    coring_test::stopwatch sw;
    rt.run([&](std::size_t) -> task<> {
        ran.fetch_add(1);
        co_await coring::sleep(1h);
    });
    CHECK(ran.load() <= 2);
    CHECK(sw.seconds() < 5.0);
}

} // namespace test_runtime_stop
