// What a deadline that does not fire costs: `co_await coring::timeout(1s, op)` against `co_await op` for an
// IORING_OP_NOP, one task awaiting NOPs in a row (each NOP then costs one io_uring_enter) and 128 tasks side by side
// (one enter per 128 NOPs, so the timeout's own cost is a larger share). Target: under 15% over the bare NOP.
//
// The timeout awaits the NOP directly in its own cancellation context, with one timer node in the frame: its cost is
// a clock read, a timer insert and remove, and the context swap. Every benchmark is repeated 5 times in random order
// and the summary compares medians.
#include "summary.hpp"

#include <coring/coring.hpp>

#include <benchmark/benchmark.h>

#include <liburing.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using coring_bench::median;
using coring_bench::summary_reporter;

benchmark::Counter per_item(double items) {
    return benchmark::Counter(items, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

const auto prep_nop = [](io_uring_sqe* sqe) { io_uring_prep_nop(sqe); };

template <bool WithTimeout>
coring::task<int> one_nop() {
    auto op = coring::submit(prep_nop);
    if constexpr (WithTimeout) {
        auto bounded = coring::timeout(1s, std::move(op));
        co_return co_await bounded;
    } else {
        co_return co_await op;
    }
}

template <bool WithTimeout>
coring::task<> driver(benchmark::State* state, bool* stop) {
    for (auto _ : *state) {
        auto nop = one_nop<WithTimeout>();
        const int res = co_await nop;
        if (res != 0) {
            state->SkipWithError("a NOP failed");
            break;
        }
    }
    *stop = true;
}

template <bool WithTimeout>
coring::task<> partner(bool* stop) {
    do {
        auto nop = one_nop<WithTimeout>();
        co_await nop;
    } while (!*stop);
}

template <bool WithTimeout>
coring::task<> side_by_side(benchmark::State* state, unsigned batch) {
    bool stop = false;
    std::vector<coring::task<>> tasks;
    tasks.push_back(driver<WithTimeout>(state, &stop));
    for (unsigned i = 1; i < batch; ++i) tasks.push_back(partner<WithTimeout>(&stop));
    auto all = coring::gather(std::move(tasks));
    co_await all;
}

template <bool WithTimeout>
void BM_nop(benchmark::State& state) {
    const auto batch = static_cast<unsigned>(state.range(0));
    coring::event_loop loop;
    loop.run(side_by_side<WithTimeout>(&state, batch));
    state.counters["per_op"] = per_item(batch);
}

void BM_nop_bare(benchmark::State& state) { BM_nop<false>(state); }
void BM_nop_timeout(benchmark::State& state) { BM_nop<true>(state); }

BENCHMARK(BM_nop_bare)->Arg(1);
BENCHMARK(BM_nop_timeout)->Arg(1);
BENCHMARK(BM_nop_bare)->Arg(128);
BENCHMARK(BM_nop_timeout)->Arg(128);

void print_summary(const summary_reporter& rep) {
    constexpr double target = 0.15;
    std::printf("\nSummary (CPU ns per NOP, median [min-max] over repetitions; overhead = timeout / bare - 1)\n");
    std::printf("%6s  %-22s  %-22s  %9s  %-8s %s\n", "tasks", "bare NOP", "timeout(1s, NOP)", "overhead", "target",
                "met");
    for (const char* batch : {"1", "128"}) {
        const auto b = rep.ns(std::string("BM_nop_bare/") + batch);
        const auto t = rep.ns(std::string("BM_nop_timeout/") + batch);
        if (b.empty() || t.empty()) continue;
        const double overhead = median(t) / median(b) - 1;
        char bs[64], ts[64];
        std::snprintf(bs, sizeof bs, "%.1f [%.1f-%.1f]", median(b), b.front(), b.back());
        std::snprintf(ts, sizeof ts, "%.1f [%.1f-%.1f]", median(t), t.front(), t.back());
        std::printf("%6s  %-22s  %-22s  %8.1f%%  < %2.0f%%    %s\n", batch, bs, ts, overhead * 100, target * 100,
                    overhead < target ? "yes" : "no");
    }
}

} // namespace

int main(int argc, char** argv) {
    summary_reporter reporter;
    if (!run_benchmarks(argc, argv, reporter, 5)) return 1;
    print_summary(reporter);
    return 0;
}
