// The same three one-second waits twice: blocking, one after another (about 3 s), then as coring tasks that wait
// concurrently (about 1 s).
#include <coring/coring.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

double seconds_since(clk::time_point start) { return std::chrono::duration<double>(clk::now() - start).count(); }

// Blocking: the thread does nothing else while it sleeps.
void blocking_job(int id) {
    std::printf("  job %d: start\n", id);
    std::this_thread::sleep_for(1s);
    std::printf("  job %d: done\n", id);
}

// Concurrent: while one task sleeps, the event loop runs the others.
coring::task<> async_job(int id) {
    std::printf("  job %d: start\n", id);
    co_await coring::sleep(1s);
    std::printf("  job %d: done\n", id);
}

coring::task<> async_main() { co_await coring::gather(async_job(1), async_job(2), async_job(3)); }

int main() {
    std::printf("blocking, one after another:\n");
    auto start = clk::now();
    for (int id = 1; id <= 3; ++id) blocking_job(id);
    const double sync_s = seconds_since(start);
    std::printf("blocking: %.2f s\n\n", sync_s);

    std::printf("coring tasks, concurrently:\n");
    start = clk::now();
    coring::run(async_main());
    const double async_s = seconds_since(start);
    std::printf("coring: %.2f s\n\n", async_s);

    std::printf("speed-up: %.1fx\n", sync_s / async_s);
}
