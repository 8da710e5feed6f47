// Task costs: spawn + await, plain await and a yield switch, each beside the floor a hand-written coroutine pays.
//
//   BM_spawn_await               co_await coring::spawn(trivial()), ns per task (target: <= 40 ns)
//   BM_await_task                co_await trivial() (no spawn), ns per task
//   BM_baseline_bare_coroutine   a minimal coroutine allocated, resumed to completion and destroyed: the heap frame
//                                every runtime pays
//   BM_yield_switch              two coring tasks alternating with co_await coring::yield_now(), ns per switch
//   BM_baseline_handle_pingpong  two minimal coroutines alternating through a std::deque<std::coroutine_handle<>>
//                                scheduler loop: the floor of any ready-queue scheduler
//
// Every coring benchmark runs all of its iterations inside one coring::run(). After the usual Google Benchmark
// output, main prints a summary: each coring figure beside its baseline, the ratio and the target. Figures are CPU
// time (Google Benchmark's default), which the other processes of a busy machine disturb less than wall time.
// For reference, condy (another header-only io_uring coroutine library) publishes about 3 ns per switch and about
// 19 ns per spawn.
#include "summary.hpp"

#include <coring/coring.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <coroutine>
#include <cstdio>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace {

constexpr int batch = 1000; // tasks (or switches) per benchmark iteration

/// The "per_op" column: CPU seconds per task or switch (shown as e.g. "16.4ns"), `items` of them per iteration.
benchmark::Counter per_item(double items) {
    return benchmark::Counter(items, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---- coring ---------------------------------------------------------------------------------------------------------

coring::task<> trivial() { co_return; }

coring::task<> spawn_await_loop(benchmark::State* state) {
    for (auto _ : *state) {
        for (int i = 0; i < batch; ++i) {
            auto h = coring::spawn(trivial());
            co_await h;
        }
    }
}

void BM_spawn_await(benchmark::State& state) {
    coring::run(spawn_await_loop(&state));
    state.counters["per_op"] = per_item(batch);
}

coring::task<> await_loop(benchmark::State* state) {
    for (auto _ : *state) {
        for (int i = 0; i < batch; ++i) {
            auto t = trivial();
            co_await std::move(t);
        }
    }
}

void BM_await_task(benchmark::State& state) {
    coring::run(await_loop(&state));
    state.counters["per_op"] = per_item(batch);
}

// The task that owns the benchmark loop yields once per iteration, the other yields until told to stop: two switches
// per iteration.
coring::task<> yield_driver(benchmark::State* state, bool* stop) {
    for (auto _ : *state) co_await coring::yield_now();
    *stop = true;
}

coring::task<> yield_partner(bool* stop) {
    while (!*stop) co_await coring::yield_now();
}

coring::task<> yield_pair(benchmark::State* state) {
    bool stop = false;
    auto both = coring::gather(yield_driver(state, &stop), yield_partner(&stop));
    co_await both;
}

void BM_yield_switch(benchmark::State& state) {
    coring::run(yield_pair(&state));
    state.counters["per_op"] = per_item(2);
}

// ---- baselines: hand-written coroutines, no runtime -----------------------------------------------------------------

/// The least a coroutine type can be: lazy, no result, the frame from the global operator new.
struct bare_task {
    struct promise_type {
        bare_task get_return_object() noexcept {
            return bare_task{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_always final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
    std::coroutine_handle<promise_type> h;
};

// Not inlined: Clang would otherwise elide the heap frame altogether (CoroElide), which no runtime can count on.
[[gnu::noinline]] bare_task bare_trivial() { co_return; }

void BM_baseline_bare_coroutine(benchmark::State& state) {
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i) {
            std::coroutine_handle<> h = bare_trivial().h;
            benchmark::DoNotOptimize(h.address()); // the frame escapes: no heap elision
            h.resume();
            h.destroy();
        }
    }
    state.counters["per_op"] = per_item(batch);
}

/// A coroutine resumed by the ping-pong scheduler; it never finishes before the scheduler is done with it.
struct pingpong_task {
    struct promise_type {
        pingpong_task get_return_object() noexcept {
            return pingpong_task{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_always final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
    std::coroutine_handle<promise_type> h;
};

/// Goes to the back of the ready queue.
struct requeue {
    explicit requeue(std::deque<std::coroutine_handle<>>* q) noexcept : queue(q) {}
    std::deque<std::coroutine_handle<>>* queue;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) const { queue->push_back(h); }
    void await_resume() const noexcept {}
};

pingpong_task pingpong_driver(benchmark::State* state, std::deque<std::coroutine_handle<>>* queue, bool* stop) {
    for (auto _ : *state) co_await requeue(queue);
    *stop = true;
}

// A do-while: Clang 14 crashes (CoroSplit, at -O2) on `while (!*stop) co_await ...;` in this coroutine type.
pingpong_task pingpong_partner(std::deque<std::coroutine_handle<>>* queue, bool* stop) {
    do {
        co_await requeue(queue);
    } while (!*stop);
}

void BM_baseline_handle_pingpong(benchmark::State& state) {
    std::deque<std::coroutine_handle<>> queue;
    bool stop = false;
    pingpong_task a = pingpong_driver(&state, &queue, &stop);
    pingpong_task b = pingpong_partner(&queue, &stop);
    queue.push_back(a.h);
    queue.push_back(b.h);
    while (!queue.empty()) {
        std::coroutine_handle<> h = queue.front();
        queue.pop_front();
        h.resume();
    }
    a.h.destroy();
    b.h.destroy();
    state.counters["per_op"] = per_item(2);
}

// In the summary's order: each coring figure, then its baseline.
BENCHMARK(BM_spawn_await);
BENCHMARK(BM_await_task);
BENCHMARK(BM_baseline_bare_coroutine);
BENCHMARK(BM_yield_switch);
BENCHMARK(BM_baseline_handle_pingpong);

// ---- summary --------------------------------------------------------------------------------------------------------

using coring_bench::median;
using coring_bench::summary_reporter;

void print_summary(const summary_reporter& rep) {
    struct row {
        const char* what;
        const char* name;
        const char* baseline_what;
        const char* baseline;
        double target; // <= 0: none
        const char* note;
    };
    const row rows[] = {
        {"spawn + await (ns/task)", "BM_spawn_await", "bare coroutine new/resume/delete", "BM_baseline_bare_coroutine",
         40, "condy publishes ~19 ns/spawn"},
        {"await task (ns/task)", "BM_await_task", "bare coroutine new/resume/delete", "BM_baseline_bare_coroutine", 0,
         ""},
        {"yield switch (ns/switch)", "BM_yield_switch", "std::deque handle ping-pong", "BM_baseline_handle_pingpong", 0,
         "condy publishes ~3 ns/switch"},
    };
    std::printf("\nSummary (CPU ns per operation, median over repetitions; ratio = coring / baseline)\n");
    std::printf("%-26s %9s  %-34s %9s  %7s  %-10s %-4s  %s\n", "measure", "coring", "baseline", "baseline", "ratio",
                "target", "met", "reference");
    for (const row& r : rows) {
        const double c = median(rep.ns(r.name)), b = median(rep.ns(r.baseline));
        if (std::isnan(c)) continue; // filtered out or failed
        char target[32] = "-", met[8] = "-", base[32] = "-", ratio[32] = "-";
        if (!std::isnan(b)) {
            std::snprintf(base, sizeof base, "%.1f", b);
            std::snprintf(ratio, sizeof ratio, "%.2fx", c / b);
        }
        if (r.target > 0) {
            std::snprintf(target, sizeof target, "<= %.0f ns", r.target);
            std::snprintf(met, sizeof met, "%s", c <= r.target ? "yes" : "NO");
        }
        std::printf("%-26s %9.1f  %-34s %9s  %7s  %-10s %-4s  %s\n", r.what, c, r.baseline_what, base, ratio, target,
                    met, r.note);
    }
}

} // namespace

int main(int argc, char** argv) {
    summary_reporter reporter;
    if (!run_benchmarks(argc, argv, reporter, 3)) return 1;
    print_summary(reporter);
    return 0;
}
