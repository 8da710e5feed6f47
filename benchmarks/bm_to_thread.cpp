// to_thread round trips: an empty function sent to the loop's worker pool and its (void) result delivered back to the
// awaiting task on the loop thread, beside a plain thread pool with the same number of threads that hands results
// back to the caller through a condition variable, and std::async. The difference is what the loop hand-off adds
// (mailbox + eventfd when the loop sleeps + the loop's io_uring read instead of a futex wake-up of the caller).
//
//   BM_to_thread_sequential       one task: `co_await coring::to_thread(empty)` in a row, us per round trip
//   BM_baseline_pool_sequential   one thread: submit to a mutex + condition variable pool, wait on a per-job
//                                 condition variable for the result, in a row
//   BM_baseline_async_sequential  std::async(std::launch::async, empty).get() in a row (a thread per call)
//   BM_to_thread_concurrent64     64 tasks, each awaiting to_thread(empty) in a row: us per job (throughput)
//   BM_baseline_pool_concurrent64 one thread keeping 64 jobs in flight on the plain pool (submit 64, wait for all):
//                                 us per job
//
// Both pools have min(32, hardware threads + 4) threads, asyncio's default (coring starts its threads on demand; the
// first, untimed, iteration starts them). Figures are wall time (a round trip is mostly waiting: CPU time of the
// caller would hide it). After the usual Google Benchmark output, main prints each coring figure beside its
// baseline. benchmarks/compare/asyncio_to_thread.py measures the same in CPython's asyncio.
#include "summary.hpp"

#include <coring/coring.hpp>
#include <coring/detail/worker_pool.hpp>
#include <coring/thread.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace {

constexpr int sequential_batch = 200; // round trips per benchmark iteration
constexpr int callers = 64;           // concurrent tasks (or jobs in flight) in the concurrent benchmarks
constexpr int per_caller = 8;         // round trips per caller per iteration

/// The "per_op" column: wall seconds per round trip (shown as e.g. "12.3us"), `items` of them per iteration.
benchmark::Counter per_item(double items) {
    return benchmark::Counter(items, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

[[gnu::noinline]] void empty() { benchmark::ClobberMemory(); }

// ---- coring ---------------------------------------------------------------------------------------------------------

coring::task<> sequential(benchmark::State* state) {
    for (auto _ : *state)
        for (int i = 0; i < sequential_batch; ++i) co_await coring::to_thread(&empty);
}

void BM_to_thread_sequential(benchmark::State& state) {
    coring::run(sequential(&state));
    state.counters["per_op"] = per_item(sequential_batch);
}

coring::task<> caller() {
    for (int i = 0; i < per_caller; ++i) co_await coring::to_thread(&empty);
}

coring::task<> concurrent(benchmark::State* state) {
    for (auto _ : *state) {
        std::vector<coring::task<>> ts;
        ts.reserve(callers);
        for (int i = 0; i < callers; ++i) ts.push_back(caller());
        auto all = coring::gather(std::move(ts));
        co_await std::move(all);
    }
}

void BM_to_thread_concurrent64(benchmark::State& state) {
    coring::run(concurrent(&state));
    state.counters["per_op"] = per_item(callers * per_caller);
}

// ---- baselines: a plain thread pool, std::async ---------------------------------------------------------------------

/// The textbook pool: a locked FIFO of std::function and a condition variable, fixed threads, no signal masking.
class plain_pool {
public:
    explicit plain_pool(std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) threads_.emplace_back([this] { work(); });
    }
    plain_pool(const plain_pool&) = delete;
    plain_pool& operator=(const plain_pool&) = delete;
    ~plain_pool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        for (auto& t : threads_) t.join();
    }
    void submit(std::function<void()> job) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            jobs_.push_back(std::move(job));
        }
        wake_.notify_one();
    }

private:
    void work() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            wake_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
            if (jobs_.empty()) return;
            std::function<void()> job = std::move(jobs_.front());
            jobs_.pop_front();
            lock.unlock();
            job();
            lock.lock();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stop_ = false;
    std::vector<std::thread> threads_;
};

/// Where the caller waits for jobs: a counter of finished jobs under a lock, and a condition variable.
struct completion {
    std::mutex mutex;
    std::condition_variable done;
    int finished = 0;

    void finish() {
        {
            std::lock_guard<std::mutex> lock(mutex);
            ++finished;
        }
        done.notify_one();
    }
    void wait_for(int n) {
        std::unique_lock<std::mutex> lock(mutex);
        done.wait(lock, [&] { return finished >= n; });
        finished = 0;
    }
};

void BM_baseline_pool_sequential(benchmark::State& state) {
    plain_pool pool(coring::detail::worker_pool::thread_limit(0));
    completion c;
    for (auto _ : state) {
        for (int i = 0; i < sequential_batch; ++i) {
            pool.submit([&c] {
                empty();
                c.finish();
            });
            c.wait_for(1);
        }
    }
    state.counters["per_op"] = per_item(sequential_batch);
}

void BM_baseline_pool_concurrent64(benchmark::State& state) {
    plain_pool pool(coring::detail::worker_pool::thread_limit(0));
    completion c;
    for (auto _ : state) {
        for (int round = 0; round < per_caller; ++round) {
            for (int i = 0; i < callers; ++i)
                pool.submit([&c] {
                    empty();
                    c.finish();
                });
            c.wait_for(callers);
        }
    }
    state.counters["per_op"] = per_item(callers * per_caller);
}

void BM_baseline_async_sequential(benchmark::State& state) {
    for (auto _ : state)
        for (int i = 0; i < sequential_batch; ++i) std::async(std::launch::async, &empty).get();
    state.counters["per_op"] = per_item(sequential_batch);
}

// In the summary's order: each coring figure, then its baselines.
BENCHMARK(BM_to_thread_sequential)->UseRealTime();
BENCHMARK(BM_baseline_pool_sequential)->UseRealTime();
BENCHMARK(BM_baseline_async_sequential)->UseRealTime();
BENCHMARK(BM_to_thread_concurrent64)->UseRealTime();
BENCHMARK(BM_baseline_pool_concurrent64)->UseRealTime();

// ---- summary --------------------------------------------------------------------------------------------------------

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
        {"to_thread, sequential", "BM_to_thread_sequential", "plain pool + condvar", "BM_baseline_pool_sequential"},
        {"to_thread, sequential", "BM_to_thread_sequential", "std::async + get", "BM_baseline_async_sequential"},
        {"to_thread, 64 callers", "BM_to_thread_concurrent64", "plain pool, 64 in flight",
         "BM_baseline_pool_concurrent64"},
    };
    std::printf("\nSummary (wall us per round trip of an empty function, median over repetitions; "
                "ratio = coring / baseline; %zu pool threads)\n",
                coring::detail::worker_pool::thread_limit(0));
    std::printf("%-24s %9s  %-26s %9s  %7s\n", "measure", "coring", "baseline", "baseline", "ratio");
    for (const row& r : rows) {
        const double c = median(rep.ns(r.name)) / 1000, b = median(rep.ns(r.baseline)) / 1000;
        if (std::isnan(c)) continue; // filtered out or failed
        char base[32] = "-", ratio[32] = "-";
        if (!std::isnan(b)) {
            std::snprintf(base, sizeof base, "%.2f", b);
            std::snprintf(ratio, sizeof ratio, "%.2fx", c / b);
        }
        std::printf("%-24s %9.2f  %-26s %9s  %7s\n", r.what, c, r.baseline_what, base, ratio);
    }
}

} // namespace

int main(int argc, char** argv) {
    summary_reporter reporter;
    if (!run_benchmarks(argc, argv, reporter, 5)) return 1;
    print_summary(reporter);
    return 0;
}
