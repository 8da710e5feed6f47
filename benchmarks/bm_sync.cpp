// Synchronisation costs: the uncontended fast paths, a producer/consumer pair through a bounded queue and an event
// round trip, each beside a baseline that does the same job without coring.
//
//   BM_mutex_lock_unlock           auto g = co_await m.lock(); on a free mutex, then the guard unlocks: ns per pair
//   BM_baseline_std_mutex          std::mutex lock + unlock, uncontended (what a thread-based program pays)
//   BM_semaphore_acquire_release   co_await s.acquire(); s.release(); with a permit available: ns per pair
//   BM_baseline_std_semaphore      std::counting_semaphore acquire + release, uncontended (libstdc++ 12 makes a
//                                  futex wake system call on every release, waiters or not: that is what it costs
//                                  a thread-based program on this toolchain, not a floor)
//   BM_queue_push_pop              co_await q.push(i); co_await q.pop(); on an unbounded queue: ns per pair
//   BM_queue_try_push_pop          q.try_push(i); q.try_pop(); ns per pair
//   BM_baseline_deque_push_pop     std::deque<int> push_back + pop_front: the container floor
//   BM_queue_producer_consumer     two tasks, one pushing and one popping through a queue of capacity 64: ns per
//                                  item (wall time), printed as items/s in the summary
//   BM_baseline_thread_queue       the same pair as two threads around a std::deque with a std::mutex and two
//                                  std::condition_variables, capacity 64 (wall time)
//   BM_event_round_trip            two tasks handing the turn back and forth through two events (set, wait, clear):
//                                  ns per round trip
//   BM_baseline_yield_round_trip   two tasks alternating with yield_now(): the scheduler's floor for one round trip
//
// Every coring benchmark runs all of its iterations inside one coring::run(). Figures are CPU time (Google Benchmark's
// default) except for the two producer/consumer pairs, which are wall time since the thread baseline spends CPU on
// two threads. After the usual Google Benchmark output, main prints the summary: each coring figure beside its
// baseline and the ratio. benchmarks/compare/asyncio_sync.py runs the same workloads in CPython's asyncio.
#include "summary.hpp"

#include <coring/coring.hpp>
#include <coring/sync.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <semaphore>
#include <thread>
#include <vector>

namespace {

constexpr int batch = 1000;          // operations per benchmark iteration
constexpr std::size_t capacity = 64; // bounded queue of the producer/consumer pairs

/// The "per_op" column: seconds per operation (shown as e.g. "16.4ns"), `items` of them per iteration.
benchmark::Counter per_item(double items) {
    return benchmark::Counter(items, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---- mutex ----------------------------------------------------------------------------------------------------------

coring::task<> mutex_loop(benchmark::State* state) {
    coring::mutex m;
    for (auto _ : *state) {
        for (int i = 0; i < batch; ++i) {
            auto g = co_await m.lock();
            benchmark::DoNotOptimize(g);
        }
    }
}

void BM_mutex_lock_unlock(benchmark::State& state) {
    coring::run(mutex_loop(&state));
    state.counters["per_op"] = per_item(batch);
}

void BM_baseline_std_mutex(benchmark::State& state) {
    std::mutex m;
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i) {
            m.lock();
            benchmark::ClobberMemory();
            m.unlock();
        }
    }
    state.counters["per_op"] = per_item(batch);
}

// ---- semaphore ------------------------------------------------------------------------------------------------------

coring::task<> semaphore_loop(benchmark::State* state) {
    coring::semaphore s(1);
    for (auto _ : *state) {
        for (int i = 0; i < batch; ++i) {
            co_await s.acquire();
            benchmark::ClobberMemory();
            s.release();
        }
    }
}

void BM_semaphore_acquire_release(benchmark::State& state) {
    coring::run(semaphore_loop(&state));
    state.counters["per_op"] = per_item(batch);
}

void BM_baseline_std_semaphore(benchmark::State& state) {
    std::counting_semaphore<> s(1);
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i) {
            s.acquire();
            benchmark::ClobberMemory();
            s.release();
        }
    }
    state.counters["per_op"] = per_item(batch);
}

// ---- queue, one task ------------------------------------------------------------------------------------------------

coring::task<> queue_loop(benchmark::State* state) {
    coring::queue<int> q;
    long sum = 0;
    for (auto _ : *state) {
        for (int i = 0; i < batch; ++i) {
            co_await q.push(i);
            sum += co_await q.pop();
        }
    }
    benchmark::DoNotOptimize(sum);
}

void BM_queue_push_pop(benchmark::State& state) {
    coring::run(queue_loop(&state));
    state.counters["per_op"] = per_item(batch);
}

void BM_queue_try_push_pop(benchmark::State& state) {
    coring::queue<int> q;
    long sum = 0;
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i) {
            (void)q.try_push(i);
            sum += *q.try_pop();
        }
    }
    benchmark::DoNotOptimize(sum);
    state.counters["per_op"] = per_item(batch);
}

void BM_baseline_deque_push_pop(benchmark::State& state) {
    std::deque<int> q;
    long sum = 0;
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i) {
            q.push_back(i);
            benchmark::ClobberMemory();
            sum += q.front();
            q.pop_front();
        }
    }
    benchmark::DoNotOptimize(sum);
    state.counters["per_op"] = per_item(batch);
}

// ---- producer / consumer --------------------------------------------------------------------------------------------

coring::task<> producer(benchmark::State* state, coring::queue<int>* q) {
    for (auto _ : *state)
        for (int i = 0; i < batch; ++i) co_await q->push(i);
    q->close();
}

coring::task<> consumer(coring::queue<int>* q, long* sum) {
    for (;;) {
        try {
            *sum += co_await q->pop();
        } catch (const coring::queue_closed&) {
            co_return;
        }
    }
}

coring::task<> producer_consumer(benchmark::State* state) {
    coring::queue<int> q(capacity);
    long sum = 0;
    co_await coring::gather(producer(state, &q), consumer(&q, &sum));
    benchmark::DoNotOptimize(sum);
}

void BM_queue_producer_consumer(benchmark::State& state) {
    coring::run(producer_consumer(&state));
    state.counters["per_op"] = per_item(batch);
}

/// The classic bounded buffer between threads.
class thread_queue {
public:
    void push(int v) {
        std::unique_lock lk(m_);
        not_full_.wait(lk, [&] { return q_.size() < capacity || stop_; });
        q_.push_back(v);
        lk.unlock();
        not_empty_.notify_one();
    }
    int pop() {
        std::unique_lock lk(m_);
        not_empty_.wait(lk, [&] { return !q_.empty(); });
        const int v = q_.front();
        q_.pop_front();
        lk.unlock();
        not_full_.notify_one();
        return v;
    }
    void stop() {
        {
            std::lock_guard lk(m_);
            stop_ = true;
        }
        not_full_.notify_all();
    }
    bool stopped() {
        std::lock_guard lk(m_);
        return stop_;
    }

private:
    std::mutex m_;
    std::condition_variable not_full_, not_empty_;
    std::deque<int> q_;
    bool stop_ = false;
};

void BM_baseline_thread_queue(benchmark::State& state) {
    thread_queue q;
    std::thread producer_thread([&q] {
        for (int i = 0; !q.stopped(); ++i) q.push(i);
    });
    long sum = 0;
    for (auto _ : state)
        for (int i = 0; i < batch; ++i) sum += q.pop();
    q.stop();
    producer_thread.join();
    benchmark::DoNotOptimize(sum);
    state.counters["per_op"] = per_item(batch);
}

// ---- event round trip -----------------------------------------------------------------------------------------------

coring::task<> ping(benchmark::State* state, coring::event* mine, coring::event* theirs, bool* stop) {
    for (auto _ : *state) {
        for (int i = 0; i < batch; ++i) {
            theirs->set();
            co_await mine->wait();
            mine->clear();
        }
    }
    *stop = true;
    theirs->set();
}

coring::task<> pong(coring::event* mine, coring::event* theirs, bool* stop) {
    for (;;) {
        co_await mine->wait();
        mine->clear();
        if (*stop) co_return;
        theirs->set();
    }
}

coring::task<> event_pair(benchmark::State* state) {
    coring::event a, b;
    bool stop = false;
    co_await coring::gather(ping(state, &a, &b, &stop), pong(&b, &a, &stop));
}

void BM_event_round_trip(benchmark::State& state) {
    coring::run(event_pair(&state));
    state.counters["per_op"] = per_item(batch);
}

coring::task<> yield_driver(benchmark::State* state, bool* stop) {
    for (auto _ : *state)
        for (int i = 0; i < batch; ++i) co_await coring::yield_now();
    *stop = true;
}

coring::task<> yield_partner(bool* stop) {
    while (!*stop) co_await coring::yield_now();
}

coring::task<> yield_pair(benchmark::State* state) {
    bool stop = false;
    co_await coring::gather(yield_driver(state, &stop), yield_partner(&stop));
}

void BM_baseline_yield_round_trip(benchmark::State& state) {
    coring::run(yield_pair(&state));
    state.counters["per_op"] = per_item(batch);
}

// In the summary's order: each coring figure, then its baseline.
BENCHMARK(BM_mutex_lock_unlock);
BENCHMARK(BM_baseline_std_mutex);
BENCHMARK(BM_semaphore_acquire_release);
BENCHMARK(BM_baseline_std_semaphore);
BENCHMARK(BM_queue_push_pop);
BENCHMARK(BM_queue_try_push_pop);
BENCHMARK(BM_baseline_deque_push_pop);
BENCHMARK(BM_queue_producer_consumer)->UseRealTime();
BENCHMARK(BM_baseline_thread_queue)->UseRealTime();
BENCHMARK(BM_event_round_trip);
BENCHMARK(BM_baseline_yield_round_trip);

// ---- summary --------------------------------------------------------------------------------------------------------

using coring_bench::median;
using coring_bench::summary_reporter;

void print_summary(const summary_reporter& rep) {
    struct row {
        const char* what;
        const char* name;
        const char* baseline_what;
        const char* baseline;
        bool rate; // also print items per second
    };
    const row rows[] = {
        {"mutex lock+unlock (ns)", "BM_mutex_lock_unlock", "std::mutex lock+unlock", "BM_baseline_std_mutex", false},
        {"semaphore acq+rel (ns)", "BM_semaphore_acquire_release", "std::counting_semaphore",
         "BM_baseline_std_semaphore", false},
        {"queue push+pop (ns)", "BM_queue_push_pop", "std::deque push+pop", "BM_baseline_deque_push_pop", false},
        {"queue try_push+try_pop (ns)", "BM_queue_try_push_pop", "std::deque push+pop", "BM_baseline_deque_push_pop",
         false},
        {"producer/consumer (ns/item)", "BM_queue_producer_consumer", "2 threads, mutex+condvar",
         "BM_baseline_thread_queue", true},
        {"event round trip (ns)", "BM_event_round_trip", "yield_now round trip", "BM_baseline_yield_round_trip", false},
    };
    std::printf("\nSummary (ns per operation, median over repetitions; ratio = coring / baseline)\n");
    std::printf("%-29s %9s  %-26s %9s  %7s  %s\n", "measure", "coring", "baseline", "baseline", "ratio", "throughput");
    for (const row& r : rows) {
        const double c = median(rep.ns(r.name)), b = median(rep.ns(r.baseline));
        if (std::isnan(c)) continue; // filtered out or failed
        char base[32] = "-", ratio[32] = "-", rate[96] = "";
        if (!std::isnan(b)) {
            std::snprintf(base, sizeof base, "%.1f", b);
            std::snprintf(ratio, sizeof ratio, "%.2fx", c / b);
        }
        if (r.rate)
            std::snprintf(rate, sizeof rate, "coring %.1f M items/s, baseline %.1f M items/s", 1e3 / c,
                          std::isnan(b) ? 0.0 : 1e3 / b);
        std::printf("%-29s %9.1f  %-26s %9s  %7s  %s\n", r.what, c, r.baseline_what, base, ratio, rate);
    }
    std::printf("(std::counting_semaphore: libstdc++ 12 makes a futex system call on every release)\n");
}

} // namespace

int main(int argc, char** argv) {
    summary_reporter reporter;
    if (!run_benchmarks(argc, argv, reporter, 3)) return 1;
    print_summary(reporter);
    return 0;
}
