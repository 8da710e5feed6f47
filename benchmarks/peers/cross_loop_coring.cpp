// Cross-loop messages between the two loops of a coring::runtime: run_on round trips (loop 0 asks loop 1 and waits
// for the answer, so both sides sleep between messages) and one-way spawn_on throughput, for each way one loop wakes
// another (loop_options::wake).
//
//   cross_loop_coring [round_trips] [one_way]
//
// Prints one line per wake-up kind: microseconds per round trip (median of 5 runs of round_trips each), and
// nanoseconds per one-way message.

#include <coring/coring.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
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
}
