// Spawning children and waiting for them: N runs of /bin/true one after the other (spawn, wait), then N with up to
// C at once. The peers of benchmarks/compare/spawn_asyncio.py and spawn_go/main.go, same arguments, same output.
//
//   spawn_coring [N=1000] [C=32]
//
// Prints microseconds per child for each way (best of 3 runs).
#include <coring/coring.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

const std::vector<std::string> true_argv{"/bin/true"};

coring::task<> one_by_one(int n) {
    for (int i = 0; i < n; ++i) {
        coring::process p = coring::process::spawn(true_argv);
        if (co_await p.wait() != 0) std::abort();
    }
}

coring::task<> at_once(int n, int c) {
    std::vector<coring::task<int>> all;
    all.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        all.push_back([]() -> coring::task<int> {
            coring::process p = coring::process::spawn(true_argv);
            co_return co_await p.wait();
        }());
    }
    std::vector<int> codes = co_await coring::gather(std::move(all), {.limit = static_cast<std::size_t>(c)});
    for (int code : codes)
        if (code != 0) std::abort();
}

template <class F>
double best_us(int n, F run) {
    double best = 1e30;
    for (int k = 0; k < 3; ++k) {
        const auto t0 = clock_type::now();
        run();
        best = std::min(best, std::chrono::duration<double, std::micro>(clock_type::now() - t0).count() / n);
    }
    return best;
}

} // namespace

int main(int argc, char** argv) {
    const int n = argc > 1 ? std::atoi(argv[1]) : 1000;
    const int c = argc > 2 ? std::atoi(argv[2]) : 32;
    const double seq = best_us(n, [&] { coring::run(one_by_one(n)); });
    const double par = best_us(n, [&] { coring::run(at_once(n, c)); });
    std::printf("coring  spawn+wait one by one: %.1f us/child\n", seq);
    std::printf("coring  spawn+wait %d at once:  %.1f us/child\n", c, par);
}
