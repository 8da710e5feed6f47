// Cross-loop messages between the two loops of a coring::runtime: run_on round trips (loop 0 asks loop 1 and waits
// for the answer, so both sides sleep between messages) and one-way spawn_on throughput, for each way one loop wakes
// another (loop_options::wake); one-way channel<int> throughput; and, as the baseline the issue names, the same two
// measurements between two plain threads over a std::mutex + std::condition_variable queue.
//
//   cross_loop_coring [round_trips] [one_way]
//
// Prints one line per kind: microseconds per round trip (median of 5 runs of round_trips each), and nanoseconds per
// one-way message (median of 3).

#include <coring/coring.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

double round_trip_us(coring::cross_wake how, int n) {
    coring::runtime_options o;
    o.loop.wake = how;
    coring::runtime rt(2, o);
    coring::event_loop* l1 = &rt.loop(1);
    double us = 0;
    rt.run([&](std::size_t i) -> coring::task<> {
        if (i == 1) co_return;
        long sum = 0;
        for (int k = 0; k < 1000; ++k)
            sum += co_await coring::run_on(
                *l1, [](int x) { return x; }, k); // warm up
        const auto t0 = clock_type::now();
        for (int k = 0; k < n; ++k)
            sum += co_await coring::run_on(
                *l1, [](int x) { return x; }, k);
        us = std::chrono::duration<double, std::micro>(clock_type::now() - t0).count() / n;
        if (sum < 0) std::puts("");
    });
    return us;
}

std::atomic<long> received{0};

double one_way_ns(coring::cross_wake how, int n) {
    coring::runtime_options o;
    o.loop.wake = how;
    coring::runtime rt(2, o);
    coring::event_loop* l1 = &rt.loop(1);
    received = 0;
    double ns = 0;
    rt.run([&](std::size_t i) -> coring::task<> {
        if (i == 1) co_return;
        const auto t0 = clock_type::now();
        for (int k = 0; k < n; ++k) {
            coring::spawn_on(*l1, []() -> coring::task<> {
                received.fetch_add(1, std::memory_order_relaxed);
                co_return;
            }());
            if (k % 64 == 63) co_await coring::yield_now(); // let this turn's wake-ups leave
        }
        while (received.load(std::memory_order_relaxed) < n) co_await coring::yield_now();
        ns = std::chrono::duration<double, std::nano>(clock_type::now() - t0).count() / n;
    });
    return ns;
}

/// channel<int>(1024) from loop 0 to loop 1: `n` sends, one receiver draining them.
double channel_ns(int n) {
    coring::runtime rt(2);
    coring::channel<int> ch(1024);
    double ns = 0;
    long got = 0;
    rt.run([&](std::size_t i) -> coring::task<> {
        if (i == 1) {
            for (;;) {
                std::optional<int> v = co_await ch.receive();
                if (!v) break;
                got += *v;
            }
            co_return;
        }
        const auto t0 = clock_type::now();
        for (int k = 0; k < n; ++k) co_await ch.send(1);
        ch.close();
        // Timed until the last send was accepted: at most 1,024 items (0.5% of 200,000) are still buffered then.
        ns = std::chrono::duration<double, std::nano>(clock_type::now() - t0).count() / n;
    });
    if (got != n) std::printf("channel: received %ld of %d\n", got, n);
    return ns;
}

/// The baseline: a std::mutex + std::condition_variable queue between two plain threads, as a hand-written thread
/// hand-off would be.
struct locked_queue {
    std::mutex m;
    std::condition_variable cv;
    std::deque<int> items;
    bool closed = false;
    void push(int v) {
        {
            std::lock_guard<std::mutex> g(m);
            items.push_back(v);
        }
        cv.notify_one();
    }
    std::optional<int> pop() {
        std::unique_lock<std::mutex> g(m);
        cv.wait(g, [&] { return !items.empty() || closed; });
        if (items.empty()) return std::nullopt;
        const int v = items.front();
        items.pop_front();
        return v;
    }
    void close() {
        {
            std::lock_guard<std::mutex> g(m);
            closed = true;
        }
        cv.notify_all();
    }
};

double condvar_round_trip_us(int n) {
    locked_queue requests, replies;
    std::thread server([&] {
        while (std::optional<int> v = requests.pop()) replies.push(*v);
    });
    long sum = 0;
    for (int k = 0; k < 1000; ++k) {
        requests.push(k);
        sum += *replies.pop();
    }
    const auto t0 = clock_type::now();
    for (int k = 0; k < n; ++k) {
        requests.push(k);
        sum += *replies.pop();
    }
    const double us = std::chrono::duration<double, std::micro>(clock_type::now() - t0).count() / n;
    requests.close();
    server.join();
    if (sum < 0) std::puts("");
    return us;
}

double condvar_one_way_ns(int n) {
    locked_queue q;
    long got = 0;
    const auto t0 = clock_type::now();
    std::thread consumer([&] {
        while (std::optional<int> v = q.pop()) got += *v;
    });
    for (int k = 0; k < n; ++k) q.push(1);
    q.close();
    consumer.join();
    const double ns = std::chrono::duration<double, std::nano>(clock_type::now() - t0).count() / n;
    if (got != n) std::printf("condvar: received %ld of %d\n", got, n);
    return ns;
}

template <class F>
double median_of(int runs, F f) {
    std::vector<double> v;
    for (int r = 0; r < runs; ++r) v.push_back(f());
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
    const int n = argc > 1 ? std::atoi(argv[1]) : 20000;
    const int m = argc > 2 ? std::atoi(argv[2]) : 200000;
    for (coring::cross_wake how : {coring::cross_wake::eventfd, coring::cross_wake::msg_ring}) {
        std::vector<double> rt;
        for (int r = 0; r < 5; ++r) rt.push_back(round_trip_us(how, n));
        std::sort(rt.begin(), rt.end());
        std::vector<double> ow;
        for (int r = 0; r < 3; ++r) ow.push_back(one_way_ns(how, m));
        std::sort(ow.begin(), ow.end());
        std::printf("%-8s round trip %.2f us (min %.2f, max %.2f), one-way %.0f ns/message\n",
                    how == coring::cross_wake::eventfd ? "eventfd" : "msg_ring", rt[2], rt[0], rt[4], ow[1]);
    }
    std::printf("channel<int>(1024), loop 0 -> loop 1 (default wake-ups): one-way %.0f ns/message\n",
                median_of(3, [&] { return channel_ns(m); }));
    std::printf("mutex+condvar queue, two plain threads: round trip %.2f us, one-way %.0f ns/message\n",
                median_of(5, [&] { return condvar_round_trip_us(n); }),
                median_of(3, [&] { return condvar_one_way_ns(m); }));
}
