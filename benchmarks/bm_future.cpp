// Futures and callbacks (issue 14), beside std::promise/std::future and, through benchmarks/compare/asyncio_future.py,
// CPython's asyncio.
//
//   BM_future_set_then_await   promise<int> p; f = p.get_future(); p.set_value(i); co_await f: ns per round (one
//                              allocation: the shared state)
//   BM_baseline_std_future     std::promise<int> + get_future + set_value + get, one thread: the same round in the
//                              standard library (its state is shared with threads: atomics, a mutex, a condvar)
//   BM_future_round_trip       two tasks handing a fresh future back and forth (each sets the other's and awaits its
//                              own): ns per round trip, two wake-ups
//   BM_baseline_yield_round_trip two tasks alternating with yield_now(): the scheduler's floor for one round trip
//   BM_call_soon               loop.call_soon(cb) x 1000, then wait for all 1000 to have run: ns per callback
//   BM_call_later_cancel       loop.call_later(1h, cb) then cancel() before it runs: ns per pair
//
// Every coring benchmark runs its iterations inside one coring::run(); figures are CPU time.
#include "summary.hpp"

#include <coring/coring.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <future>
#include <vector>

namespace {

constexpr int batch = 1000; // operations per benchmark iteration

benchmark::Counter per_item(double items) {
    return benchmark::Counter(items, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---- set, then await ------------------------------------------------------------------------------------------------

coring::task<> set_then_await(benchmark::State* state) {
    long sum = 0;
    for (auto _ : *state) {
        for (int i = 0; i < batch; ++i) {
            coring::promise<int> p;
            coring::future<int> f = p.get_future();
            p.set_value(i);
            sum += co_await f;
        }
    }
    benchmark::DoNotOptimize(sum);
}

void BM_future_set_then_await(benchmark::State& state) {
    coring::run(set_then_await(&state));
    state.counters["per_op"] = per_item(batch);
}

void BM_baseline_std_future(benchmark::State& state) {
    long sum = 0;
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i) {
            std::promise<int> p;
            std::future<int> f = p.get_future();
            p.set_value(i);
            sum += f.get();
        }
    }
    benchmark::DoNotOptimize(sum);
    state.counters["per_op"] = per_item(batch);
}

// ---- round trip between two tasks -----------------------------------------------------------------------------------

struct ping_pong {
    coring::promise<int> to_pong;
    coring::promise<int> to_ping;
    bool stop = false;
};

coring::task<> pong(ping_pong* s) {
    for (;;) {
        const int v = co_await s->to_pong.get_future();
        if (s->stop) co_return;
        s->to_pong = coring::promise<int>();
        coring::promise<int> reply = std::move(s->to_ping);
        s->to_ping = coring::promise<int>();
        reply.set_value(v + 1);
    }
}

coring::task<> ping(benchmark::State* state) {
    ping_pong s;
    auto partner = coring::spawn(pong(&s));
    int v = 0;
    for (auto _ : *state) {
        for (int i = 0; i < batch; ++i) {
            coring::future<int> mine = s.to_ping.get_future();
            s.to_pong.set_value(v);
            v = co_await mine;
        }
    }
    s.stop = true;
    s.to_pong.set_value(0);
    co_await partner;
    benchmark::DoNotOptimize(v);
}

void BM_future_round_trip(benchmark::State& state) {
    coring::run(ping(&state));
    state.counters["per_op"] = per_item(batch);
}

coring::task<> yield_partner(bool* stop) {
    while (!*stop) co_await coring::yield_now();
}

coring::task<> yield_driver(benchmark::State* state) {
    bool stop = false;
    auto partner = coring::spawn(yield_partner(&stop));
    for (auto _ : *state)
        for (int i = 0; i < batch; ++i) co_await coring::yield_now();
    stop = true;
    co_await partner;
}

void BM_baseline_yield_round_trip(benchmark::State& state) {
    coring::run(yield_driver(&state));
    state.counters["per_op"] = per_item(batch);
}

// ---- callbacks ------------------------------------------------------------------------------------------------------

coring::task<> call_soon_loop(benchmark::State* state) {
    coring::event_loop& loop = coring::event_loop::current();
    int ran = 0;
    for (auto _ : *state) {
        for (int i = 0; i < batch; ++i) (void)loop.call_soon([&ran] { ++ran; });
        while (ran < batch) co_await coring::yield_now();
        ran = 0;
    }
}

void BM_call_soon(benchmark::State& state) {
    coring::run(call_soon_loop(&state));
    state.counters["per_op"] = per_item(batch);
}

coring::task<> call_later_cancel_loop(benchmark::State* state) {
    coring::event_loop& loop = coring::event_loop::current();
    int ran = 0;
    for (auto _ : *state) {
        for (int i = 0; i < batch; ++i) {
            coring::callback_handle h = loop.call_later(std::chrono::hours(1), [&ran] { ++ran; });
            h.cancel();
        }
        co_await coring::yield_now(); // the cancelled callbacks' tasks end and are freed
    }
    benchmark::DoNotOptimize(ran);
}

void BM_call_later_cancel(benchmark::State& state) {
    coring::run(call_later_cancel_loop(&state));
    state.counters["per_op"] = per_item(batch);
}

BENCHMARK(BM_future_set_then_await);
BENCHMARK(BM_baseline_std_future);
BENCHMARK(BM_future_round_trip);
BENCHMARK(BM_baseline_yield_round_trip);
BENCHMARK(BM_call_soon);
BENCHMARK(BM_call_later_cancel);

using coring_bench::median;
using coring_bench::summary_reporter;

void print_summary(const summary_reporter& rep) {
    struct row {
        const char* what;
        const char* name;
        const char* baseline_what;
        const char* baseline;
    };
    const row rows[] = {
        {"future set+await (ns)", "BM_future_set_then_await", "std::promise/std::future", "BM_baseline_std_future"},
        {"future round trip (ns)", "BM_future_round_trip", "yield_now round trip", "BM_baseline_yield_round_trip"},
        {"call_soon (ns/callback)", "BM_call_soon", "-", ""},
        {"call_later+cancel (ns)", "BM_call_later_cancel", "-", ""},
    };
    std::printf("\nSummary (ns per operation, median over repetitions; ratio = coring / baseline)\n");
    std::printf("%-26s %9s  %-26s %9s  %7s\n", "measure", "coring", "baseline", "baseline", "ratio");
    for (const row& r : rows) {
        const double c = median(rep.ns(r.name));
        const double b = *r.baseline ? median(rep.ns(r.baseline)) : std::nan("");
        if (std::isnan(c)) continue;
        char base[32] = "-", ratio[32] = "-";
        if (!std::isnan(b)) {
            std::snprintf(base, sizeof base, "%.1f", b);
            std::snprintf(ratio, sizeof ratio, "%.2fx", c / b);
        }
        std::printf("%-26s %9.1f  %-26s %9s  %7s\n", r.what, c, r.baseline_what, base, ratio);
    }
}

} // namespace

int main(int argc, char** argv) {
    summary_reporter reporter;
    if (!run_benchmarks(argc, argv, reporter, 3)) return 1;
    print_summary(reporter);
    return 0;
}
