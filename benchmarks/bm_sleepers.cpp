// A million concurrent sleepers: N tasks each doing `co_await coring::sleep(1s)`, their join_handles kept in a
// std::vector, then awaited one by one (each frame is freed right after its await, as tokio frees a task when its
// awaited JoinHandle is dropped).
//
//   BM_sleepers                 wall time from before the first spawn to after the last await (target: < 1.3 s for
//                               1M; the 1 s sleep is the floor, so overhead = wall - 1 s), the time to spawn them all,
//                               and the memory each sleeper holds while all are asleep: the glibc heap in use
//                               (mallinfo2 uordblks + hblkhd) and the resident set (/proc/self/statm), both as the
//                               growth from just before the first spawn to just after one co_await coring::yield_now()
//                               has let every sleeper reach its sleep (target: < 300 bytes per sleeper).
//   BM_baseline_records         the least bookkeeping a sleeper can need without coring: N heap-allocated 64-byte
//                               records (a deadline, a resume address, links) in a std::vector, measured the same way.
//
// N defaults to 1,000,000; set it with --sleepers=N or the environment variable CORING_SLEEPERS. Each benchmark runs
// once (Iterations(1)): the figures are wall time, so run it on an otherwise idle machine.
#include <coring/coring.hpp>

#include <benchmark/benchmark.h>

#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

std::size_t sleepers = 1'000'000; // N

double seconds(clk::duration d) { return std::chrono::duration<double>(d).count(); }

/// What the process holds: the glibc heap in use (including mmapped chunks) and the resident set.
struct memory {
    double heap = 0;
    double rss = 0;

    static memory now() {
        const struct mallinfo2 mi = mallinfo2();
        memory m;
        m.heap = static_cast<double>(mi.uordblks + mi.hblkhd);
        if (std::FILE* f = std::fopen("/proc/self/statm", "re")) {
            unsigned long size = 0, resident = 0;
            if (std::fscanf(f, "%lu %lu", &size, &resident) == 2)
                m.rss = static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
            std::fclose(f);
        }
        return m;
    }
};

/// Everything the summary needs from one run.
struct figures {
    double wall_s = 0;       // first spawn .. last await
    double spawn_s = 0;      // first spawn .. last spawn
    double asleep_s = 0;     // first spawn .. every sleeper waiting in the timer queue
    double first_done_s = 0; // first spawn .. the first await returned
    double heap_per = 0;     // heap growth per sleeper (or record), bytes
    double rss_per = 0;      // resident-set growth per sleeper (or record), bytes
    double handles_per = 0;  // the std::vector of join_handles (reserved before the memory baseline), bytes
};

std::map<std::string, figures> results; // by benchmark name

// ---- coring ---------------------------------------------------------------------------------------------------------

coring::task<> sleeper() { co_await coring::sleep(1s); }

coring::task<> sleep_all(benchmark::State* state, std::size_t n, figures* out) {
    for (auto _ : *state) {
        std::vector<coring::join_handle<void>> handles;
        handles.reserve(n);
        malloc_trim(0);
        const memory before = memory::now();

        const auto t0 = clk::now();
        for (std::size_t i = 0; i < n; ++i) handles.push_back(coring::spawn(sleeper()));
        const auto t1 = clk::now();
        co_await coring::yield_now(); // the sleepers were queued first: all of them run up to their sleep
        const auto t2 = clk::now();
        const memory asleep = memory::now();
        for (std::size_t i = 0; i < n; ++i) {
            coring::join_handle<void> h = std::move(handles[i]);
            co_await h; // the frame is freed when h goes, right after
            if (i == 0) out->first_done_s = seconds(clk::now() - t0);
        }
        const auto t3 = clk::now();

        out->spawn_s = seconds(t1 - t0);
        out->asleep_s = seconds(t2 - t0);
        out->wall_s = seconds(t3 - t0);
        out->heap_per = (asleep.heap - before.heap) / static_cast<double>(n);
        out->rss_per = (asleep.rss - before.rss) / static_cast<double>(n);
        out->handles_per = static_cast<double>(handles.capacity() * sizeof(handles[0])) / static_cast<double>(n);
    }
}

void BM_sleepers(benchmark::State& state) {
    figures f;
    coring::run(sleep_all(&state, sleepers, &f));
    results["BM_sleepers"] = f;
    state.counters["N"] = static_cast<double>(sleepers);
    state.counters["spawn_s"] = f.spawn_s;
    state.counters["overhead_ms"] = (f.wall_s - 1.0) * 1e3;
    state.counters["heap_B/sleeper"] = f.heap_per;
    state.counters["rss_B/sleeper"] = f.rss_per;
}

// ---- baseline -------------------------------------------------------------------------------------------------------

/// What a sleeper must remember at the least: when to wake, what to resume, and its place in a timer list.
struct record {
    clk::time_point deadline;
    void* resume;
    record* prev;
    record* next;
    void* owner;
    std::uint64_t state[3];
};
static_assert(sizeof(record) == 64);

void BM_baseline_records(benchmark::State& state) {
    figures f;
    for (auto _ : state) {
        std::vector<std::unique_ptr<record>> records;
        records.reserve(sleepers);
        malloc_trim(0);
        const memory before = memory::now();
        const auto t0 = clk::now();
        for (std::size_t i = 0; i < sleepers; ++i) records.push_back(std::make_unique<record>());
        const auto t1 = clk::now();
        const memory after = memory::now();
        benchmark::DoNotOptimize(records.data());
        f.spawn_s = seconds(t1 - t0);
        f.heap_per = (after.heap - before.heap) / static_cast<double>(sleepers);
        f.rss_per = (after.rss - before.rss) / static_cast<double>(sleepers);
        f.handles_per = static_cast<double>(records.capacity() * sizeof(records[0])) / static_cast<double>(sleepers);
    }
    results["BM_baseline_records"] = f;
    state.counters["N"] = static_cast<double>(sleepers);
    state.counters["alloc_s"] = f.spawn_s;
    state.counters["heap_B/record"] = f.heap_per;
    state.counters["rss_B/record"] = f.rss_per;
}

BENCHMARK(BM_sleepers)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_baseline_records)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- summary --------------------------------------------------------------------------------------------------------

/// One line of the summary; empty strings leave a column blank.
void line(const char* measure, const std::string& coring, const std::string& floor, const char* target = "",
          const std::string& met = "") {
    std::printf("%-38s %12s  %-38s %-9s %s\n", measure, coring.c_str(), floor.c_str(), target, met.c_str());
}

std::string fmt(const char* format, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v);
    return buf;
}

void print_summary() {
    const auto s = results.find("BM_sleepers");
    if (s == results.end()) return;
    const figures& c = s->second;
    const auto b = results.find("BM_baseline_records");
    const bool have_b = b != results.end();
    const double n = static_cast<double>(sleepers);
    const std::string n_note = sleepers == 1'000'000 ? "" : " (target is for N = 1M)";

    std::printf("\nSummary: %zu tasks each sleeping 1 s, all concurrently (wall time; baseline: %zu heap-allocated "
                "64-byte records)\n",
                sleepers, sleepers);
    line("measure", "coring", "floor / baseline", "target", "met");
    line("wall, first spawn .. last await", fmt("%.3f s", c.wall_s), "1.000 s: the sleep itself", "< 1.3 s",
         (c.wall_s < 1.3 ? "yes" : "NO") + n_note);
    line("  overhead = wall - 1 s", fmt("%.0f ms", (c.wall_s - 1) * 1e3), "0 ms");
    line("  spawn all", fmt("%.3f s", c.spawn_s), have_b ? fmt("%.3f s: allocate the records", b->second.spawn_s) : "");
    line("  spawn, per sleeper", fmt("%.0f ns", c.spawn_s * 1e9 / n),
         have_b ? fmt("%.0f ns per record", b->second.spawn_s * 1e9 / n) : "");
    line("  all asleep (one yield_now later)", fmt("%.3f s", c.asleep_s), "");
    line("  first await returned", fmt("%.3f s", c.first_done_s), "its sleep began at ~spawn all");
    line("  first await .. last await", fmt("%.3f s", c.wall_s - c.first_done_s), "");
    if (c.heap_per == 0 && c.rss_per > 0) // mallinfo2 sees nothing: malloc is not glibc's (a sanitizer, tcmalloc)
        line("heap per sleeper (mallinfo2)", "n/a", "malloc is not glibc's", "< 300 B", "?");
    else
        line("heap per sleeper (mallinfo2)", fmt("%.0f B", c.heap_per),
             have_b ? fmt("%.0f B per record", b->second.heap_per) : "", "< 300 B", c.heap_per < 300 ? "yes" : "NO");
    line("RSS growth per sleeper (statm)", fmt("%.0f B", c.rss_per),
         have_b ? fmt("%.0f B per record", b->second.rss_per) : "");
    line("  + the std::vector of join_handles", fmt("%.0f B", c.handles_per), "reserved before the memory baseline");
}

/// Takes --sleepers=N out of the arguments; CORING_SLEEPERS=N in the environment works too.
void parse_sleepers(int& argc, char** argv) {
    if (const char* e = std::getenv("CORING_SLEEPERS")) sleepers = std::strtoull(e, nullptr, 10);
    int out = 1;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "--sleepers=", 11) == 0) sleepers = std::strtoull(argv[i] + 11, nullptr, 10);
        else argv[out++] = argv[i];
    }
    argc = out;
    if (sleepers == 0) sleepers = 1;
}

} // namespace

int main(int argc, char** argv) {
    parse_sleepers(argc, argv);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    print_summary();
    return 0;
}
