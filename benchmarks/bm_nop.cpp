// IORING_OP_NOP through coring's loop against a raw liburing loop with the same batch and the same ring.
//
//   BM_nop_coring/B  B tasks (gathered) each looping `co_await coring::submit(nop)`: each round the loop resumes all
//                    B, which prepare B SQEs, then one io_uring_enter submits them and reaps the B completions.
//   BM_nop_raw/B     the same round by hand: B x (io_uring_get_sqe + io_uring_prep_nop), io_uring_submit_and_wait(B),
//                    reap B with io_uring_for_each_cqe + io_uring_cq_advance.
//
// Both rings have the flags coring's default loop gets (SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN|SUBMIT_ALL, a CQ of
// 8 x the 1024-entry SQ) and a registered ring fd; main prints them. Every benchmark is repeated 5 times in random
// order, so that the machine's drift spreads over both sides, and the summary compares the medians: coring's
// throughput as a share of the raw loop's, per batch (target: at least 70%). Figures are CPU time per NOP (user and
// kernel: with DEFER_TASKRUN the NOPs complete inside the thread's own io_uring_enter).
#include "summary.hpp"

#include <coring/coring.hpp>

#include <benchmark/benchmark.h>

#include <liburing.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr unsigned ring_entries = 1024; // coring's default SQ; every batch fits

/// The "per_op" column: CPU seconds per NOP (shown as e.g. "45.1ns"), `items` of them per iteration.
benchmark::Counter per_item(double items) {
    return benchmark::Counter(items, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

/// io_uring_enter calls per NOP, averaged over the run.
benchmark::Counter per_nop(double total, benchmark::IterationCount iterations, unsigned batch) {
    return benchmark::Counter(total / (static_cast<double>(iterations) * batch));
}

const auto prep_nop = [](io_uring_sqe* sqe) { io_uring_prep_nop(sqe); };

/// "SINGLE_ISSUER|DEFER_TASKRUN|..." for IORING_SETUP_* flags.
std::string setup_flag_names(unsigned flags) {
    const std::pair<unsigned, const char*> names[] = {
        {IORING_SETUP_IOPOLL, "IOPOLL"},
        {IORING_SETUP_SQPOLL, "SQPOLL"},
        {IORING_SETUP_CQSIZE, "CQSIZE"},
        {IORING_SETUP_CLAMP, "CLAMP"},
        {IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL"},
        {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
        {IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG"},
        {IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"},
        {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
    };
    std::string s;
    for (const auto& [bit, name] : names) {
        if (!(flags & bit)) continue;
        if (!s.empty()) s += '|';
        s += name;
        flags &= ~bit;
    }
    if (flags) s += (s.empty() ? "" : "|") + std::to_string(flags);
    return s.empty() ? "none" : s;
}

unsigned coring_setup_flags = 0; // what coring's default loop got from this kernel; the raw ring asks for the same

// ---- coring ---------------------------------------------------------------------------------------------------------

// The task that owns the benchmark loop does one NOP per iteration; its partners go on until it is done. All of them
// are resumed in the same turn, so every iteration is one round of `batch` NOPs.
coring::task<> nop_driver(benchmark::State* state, bool* stop) {
    for (auto _ : *state) {
        auto op = coring::submit(prep_nop);
        const int res = co_await op;
        if (res != 0) {
            state->SkipWithError("coring: a NOP failed");
            break;
        }
    }
    *stop = true;
}

coring::task<> nop_partner(bool* stop) {
    do {
        auto op = coring::submit(prep_nop);
        co_await op;
    } while (!*stop);
}

coring::task<> nop_round_robin(benchmark::State* state, unsigned batch) {
    bool stop = false;
    std::vector<coring::task<>> tasks;
    tasks.reserve(batch);
    tasks.push_back(nop_driver(state, &stop));
    for (unsigned i = 1; i < batch; ++i) tasks.push_back(nop_partner(&stop));
    auto all = coring::gather(std::move(tasks));
    co_await all;
}

void BM_nop_coring(benchmark::State& state) {
    const auto batch = static_cast<unsigned>(state.range(0));
    coring::event_loop loop;
    loop.run(nop_round_robin(&state, batch));
    state.counters["per_op"] = per_item(batch);
    state.counters["enters/op"] = per_nop(static_cast<double>(loop.stats().enters), state.iterations(), batch);
}

// ---- raw liburing ---------------------------------------------------------------------------------------------------

void BM_nop_raw(benchmark::State& state) {
    const auto batch = static_cast<unsigned>(state.range(0));
    io_uring ring{};
    io_uring_params params{};
    params.flags = coring_setup_flags;
    params.cq_entries = ring_entries * 8;
    if (const int r = io_uring_queue_init_params(ring_entries, &ring, &params); r < 0) {
        state.SkipWithError(("io_uring_queue_init_params: " + std::string(std::strerror(-r))).c_str());
        return;
    }
    io_uring_register_ring_fd(&ring); // coring does it too; each enter then skips the fd lookup
    double enters = 0;
    for (auto _ : state) {
        for (unsigned i = 0; i < batch; ++i) io_uring_prep_nop(io_uring_get_sqe(&ring));
        const int r = io_uring_submit_and_wait(&ring, batch);
        ++enters;
        unsigned head = 0, seen = 0;
        bool failed = r < 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&ring, head, cqe) {
            failed |= cqe->res != 0;
            ++seen;
        }
        io_uring_cq_advance(&ring, seen);
        if (failed || seen != batch) {
            state.SkipWithError("raw: a NOP failed or went missing");
            break;
        }
    }
    io_uring_queue_exit(&ring);
    state.counters["per_op"] = per_item(batch);
    state.counters["enters/op"] = per_nop(enters, state.iterations(), batch);
}

// Each batch size: coring, then raw.
BENCHMARK(BM_nop_coring)->Arg(1);
BENCHMARK(BM_nop_raw)->Arg(1);
BENCHMARK(BM_nop_coring)->Arg(32);
BENCHMARK(BM_nop_raw)->Arg(32);
BENCHMARK(BM_nop_coring)->Arg(128);
BENCHMARK(BM_nop_raw)->Arg(128);

// ---- summary --------------------------------------------------------------------------------------------------------

using coring_bench::median;
using coring_bench::summary_reporter;

void print_summary(const summary_reporter& rep) {
    constexpr double target = 0.70;
    std::printf(
        "\nSummary (CPU ns per NOP, median [min-max] over repetitions; throughput ratio = raw ns / coring ns)\n");
    std::printf("%5s  %-22s  %-22s  %11s  %-11s %s\n", "batch", "coring ns/NOP", "raw ns/NOP", "coring/raw", "target",
                "met");
    for (const char* batch : {"1", "32", "128"}) {
        const auto c = rep.ns(std::string("BM_nop_coring/") + batch);
        const auto r = rep.ns(std::string("BM_nop_raw/") + batch);
        if (c.empty() || r.empty()) continue; // filtered out or failed
        const double ratio = median(r) / median(c);
        char cs[64], rs[64];
        std::snprintf(cs, sizeof cs, "%.1f [%.1f-%.1f]", median(c), c.front(), c.back());
        std::snprintf(rs, sizeof rs, "%.1f [%.1f-%.1f]", median(r), r.front(), r.back());
        std::printf("%5s  %-22s  %-22s  %10.0f%%  %-11s %s\n", batch, cs, rs, ratio * 100, ">= 70%",
                    ratio >= target ? "yes" : "NO");
    }
}

} // namespace

int main(int argc, char** argv) {
    {
        coring::event_loop probe; // one loop per thread: gone before the benchmarks make theirs
        coring_setup_flags = probe.setup_flags();
    }
    std::printf("coring loop setup flags: 0x%x (%s)\n", coring_setup_flags,
                setup_flag_names(coring_setup_flags).c_str());
    std::printf("raw ring setup flags:    0x%x (%s), %u SQ / %u CQ entries, registered ring fd, like coring's\n",
                coring_setup_flags, setup_flag_names(coring_setup_flags).c_str(), ring_entries, ring_entries * 8);

    summary_reporter reporter;
    if (!run_benchmarks(argc, argv, reporter, 5)) return 1;
    print_summary(reporter);
    return 0;
}
