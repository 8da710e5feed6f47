// to_thread on the loops of a runtime: one worker pool for all of them, bounded as a whole.
#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/detail/worker_pool.hpp>
#include <coring/thread.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

namespace test_to_thread_runtime {

using namespace std::chrono_literals;
using coring::task;

namespace {

coring::detail::worker_pool& pool() { return coring::event_loop::current().service<coring::detail::worker_pool>(); }

/// Blocks the calling (worker) thread until `flag` is set, for at most `limit`.
void block_until(const std::atomic<bool>& flag, std::chrono::milliseconds limit = 10000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!flag.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
}

/// Polls `pred` from a loop (without blocking it) until it holds; false after 10 s.
template <class Pred>
task<bool> wait_until(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) co_return false;
        co_await coring::sleep(1ms);
    }
    co_return true;
}

/// Jobs of both loops: how many run at once, at most, and what went wrong (Catch is not thread-safe: loop and
/// worker threads only count, the test checks after run()).
struct shared_counts {
    std::atomic<int> running{0};
    std::atomic<int> most{0};
    std::atomic<int> done{0};
    std::atomic<int> wrong{0};
    std::atomic<bool> release{false};
    std::atomic<std::uintptr_t> pools[2]{};
    std::atomic<std::size_t> threads_seen{0};
};

/// One job: counts itself while it runs and waits for the release.
int held_job(shared_counts& c, int value) {
    const int now = c.running.fetch_add(1) + 1;
    int seen = c.most.load();
    while (now > seen && !c.most.compare_exchange_weak(seen, now)) {}
    block_until(c.release);
    c.running.fetch_sub(1);
    return value;
}

/// Loop i's part: six held jobs at once, each resumed on this loop with its own value.
task<> submit_six(shared_counts& c, std::size_t i) {
    coring::event_loop* self = &coring::event_loop::current();
    c.pools[i] = reinterpret_cast<std::uintptr_t>(&pool());
    std::vector<task<int>> jobs;
    for (int k = 0; k < 6; ++k) {
        const int value = static_cast<int>(i) * 100 + k;
        jobs.push_back([](shared_counts& c, int value, coring::event_loop* self) -> task<int> {
            const int v = co_await coring::to_thread(held_job, std::ref(c), value);
            if (&coring::event_loop::current() != self) c.wrong.fetch_add(1);
            co_return v;
        }(c, value, self));
    }
    if (i == 0) {
        // Every thread of the shared pool busy, then a moment in which a fourth job could start if the bound were
        // per loop; then everything may finish.
        auto released = [](shared_counts& c) -> task<> {
            const bool full = co_await wait_until([&c] { return c.running.load() == 3; });
            if (!full) c.wrong.fetch_add(1000);
            co_await coring::sleep(50ms);
            c.threads_seen = pool().threads();
            c.release = true;
        }(c);
        auto releaser = coring::spawn(std::move(released));
        const std::vector<int> got = co_await coring::gather(std::move(jobs));
        co_await releaser;
        for (int k = 0; k < 6; ++k)
            if (got[static_cast<std::size_t>(k)] != k) c.wrong.fetch_add(1);
    } else {
        const std::vector<int> got = co_await coring::gather(std::move(jobs));
        for (int k = 0; k < 6; ++k)
            if (got[static_cast<std::size_t>(k)] != 100 + k) c.wrong.fetch_add(1);
    }
    c.done.fetch_add(6);
}

} // namespace

TEST_CASE("to_thread in a runtime - the loops share one pool and worker_threads bounds it as a whole",
          "[thread][runtime]") {
    shared_counts c;
    coring::runtime_options o;
    o.loop.worker_threads = 3;
    coring::runtime rt(2, o);
    rt.run([&c](std::size_t i) -> task<> { return submit_six(c, i); });
    CHECK(c.wrong.load() == 0);
    CHECK(c.done.load() == 12);
    CHECK(c.most.load() == 3); // twelve jobs at once, three threads for both loops
    CHECK(c.threads_seen.load() == 3);
    CHECK(c.pools[0].load() == c.pools[1].load());
    CHECK(c.pools[0].load() != 0);
}

TEST_CASE("to_thread in a runtime - a job queued behind another loop's is withdrawn when cancelled and never runs",
          "[thread][runtime][cancel]") {
    std::atomic<bool> busy_started{false}, release{false}, withdrawn_ran{false}, cancelled{false}, second_done{false};
    std::atomic<int> wrong{0};
    coring::runtime_options o;
    o.loop.worker_threads = 1;
    coring::runtime rt(2, o);
    rt.run([&](std::size_t i) -> task<> {
        if (i == 1) {
            // Holds the runtime's only worker until loop 0 has seen its own job withdrawn.
            co_await coring::to_thread([&] {
                busy_started = true;
                block_until(release);
            });
            co_return;
        }
        const bool up = co_await wait_until([&] { return busy_started.load(); });
        if (!up) wrong.fetch_add(1);
        auto queued = coring::spawn(coring::to_thread([&] { withdrawn_ran = true; }));
        co_await coring::sleep(5ms);
        if (queued.done()) wrong.fetch_add(1);
        queued.cancel();
        try {
            co_await queued;
        } catch (const coring::cancelled_error&) {
            cancelled = true;
        }
        release = true;
        // The worker is free now: a job that had not been withdrawn would run before this one.
        co_await coring::to_thread([&] { second_done = true; });
    });
    CHECK(wrong.load() == 0);
    CHECK(cancelled.load());
    CHECK(second_done.load());
    CHECK_FALSE(withdrawn_ran.load());
}

TEST_CASE("to_thread in a runtime - many jobs from every loop all come back to their own loop", "[thread][runtime]") {
#if defined(__SANITIZE_THREAD__)
    constexpr int per_loop = 500;
#else
    constexpr int per_loop = 5000;
#endif
    std::atomic<int> wrong{0};
    std::atomic<long> sum{0};
    coring::runtime_options o;
    o.loop.worker_threads = 2;
    coring::runtime rt(3, o);
    rt.run([&](std::size_t i) -> task<> {
        coring::event_loop* self = &coring::event_loop::current();
        // Batches of 50 in flight, so that the three loops' jobs interleave in the one queue.
        for (int b = 0; b < per_loop / 50; ++b) {
            std::vector<task<int>> batch;
            for (int k = 0; k < 50; ++k)
                batch.push_back([](int v, coring::event_loop* self, std::atomic<int>& wrong) -> task<int> {
                    const int r = co_await coring::to_thread([](int x) { return x * 2; }, v);
                    if (&coring::event_loop::current() != self) wrong.fetch_add(1);
                    co_return r;
                }(static_cast<int>(i) + 1, self, wrong));
            const std::vector<int> results = co_await coring::gather(std::move(batch));
            for (int r : results) sum.fetch_add(r);
        }
        if (pool().threads() > 2) wrong.fetch_add(1);
    });
    CHECK(wrong.load() == 0);
    CHECK(sum.load() == 2L * per_loop * (1 + 2 + 3));
}

} // namespace test_to_thread_runtime
