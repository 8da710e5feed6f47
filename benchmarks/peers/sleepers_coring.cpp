// The peer harness's `sleepers` workload (/work/shared/peers: ./run sleepers 'coring=exec /path/to/sleepers_coring'),
// doing what its tokio current_thread and Boost.Asio peers do:
//   MODE=sleep: N tasks, each co_await coring::sleep(1s), all concurrently; their join_handles are kept in a vector and
//               awaited in order, each dropped (its frame freed) after its await, as tokio drops its JoinHandles.
//   MODE=spawn: create-and-await N trivial tasks one after another (co_await coring::spawn(trivial())).
// N and MODE come from the environment (or argv[1], argv[2]), N defaults to 100000 and MODE to sleep.
// Prints: mode=... n=... spawn_s=... elapsed_s=... ns_per_task=...
//   spawn_s: creating all sleepers (sleep), the whole loop (spawn); elapsed_s: from before the first spawn to after the
//   last await; ns_per_task: spawn_s / N (sleep), elapsed_s / N (spawn).
#include <coring/coring.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

coring::task<> sleeper() { co_await coring::sleep(1s); }

coring::task<> trivial() { co_return; }

coring::task<> measure(long n, bool spawn_mode) {
    const auto t0 = clk::now();
    auto t1 = t0;
    if (spawn_mode) {
        for (long i = 0; i < n; ++i) {
            auto h = coring::spawn(trivial());
            co_await h;
        }
        t1 = clk::now();
    } else {
        std::vector<coring::join_handle<void>> handles;
        handles.reserve(static_cast<std::size_t>(n));
        for (long i = 0; i < n; ++i) handles.push_back(coring::spawn(sleeper()));
        t1 = clk::now();
        for (auto& slot : handles) {
            coring::join_handle<void> h = std::move(slot);
            co_await h;
        }
    }
    const auto t2 = clk::now();
    const double spawn_s = std::chrono::duration<double>(t1 - t0).count();
    const double elapsed_s = std::chrono::duration<double>(t2 - t0).count();
    std::printf("mode=%s n=%ld spawn_s=%.3f elapsed_s=%.3f ns_per_task=%.1f\n", spawn_mode ? "spawn" : "sleep", n,
                spawn_s, elapsed_s, (spawn_mode ? elapsed_s : spawn_s) * 1e9 / static_cast<double>(n));
}

} // namespace

int main(int argc, char** argv) {
    const char* ns = argc > 1 ? argv[1] : std::getenv("N");
    const char* mode = argc > 2 ? argv[2] : std::getenv("MODE");
    const long n = ns ? std::atol(ns) : 100000;
    const bool spawn_mode = mode && std::strcmp(mode, "spawn") == 0;
    if (n <= 0) {
        std::fprintf(stderr, "sleepers_coring: N must be a positive number\n");
        return 2;
    }
    coring::run(measure(n, spawn_mode));
    return 0;
}
