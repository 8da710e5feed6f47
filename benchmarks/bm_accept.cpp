// The accept path alone: a backlog of connections already made (their handshakes done in the kernel), taken by a
// server task's accept loop, with the standing multishot accept (loop_options::multishot_accept, the default) and
// with one IORING_OP_ACCEPT per call. Connecting and closing are outside the timing, so the figure is what the
// loop spends per accept() (submission, completion, resume; and getpeername, which both paths do): the part of a new
// connection that coring controls. benchmarks/compare/connect_storm.py measures whole connections, where the
// kernel's TCP work dominates.
//
//   BM_accept/1   multishot accept: wall time per accept() over a backlog of 256
//   BM_accept/0   an accept submitted per call, the same
//
// After the usual Google Benchmark output, main prints the two side by side.
#include "summary.hpp"

#include <coring/coring.hpp>

#include <benchmark/benchmark.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

namespace {

constexpr int backlog = 256; // connections accepted per benchmark iteration

coring::task<> accept_all(benchmark::State* state) {
    auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    const coring::address at = l.local_address();
    std::vector<int> clients;
    std::vector<coring::tcp_stream> accepted;
    clients.reserve(backlog);
    accepted.reserve(backlog);
    for (auto _ : *state) {
        state->PauseTiming();
        for (int i = 0; i < backlog; ++i) {
            const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0 || ::connect(fd, at.data(), at.size()) != 0) {
                state->SkipWithError("connect failed");
                co_return;
            }
            clients.push_back(fd);
        }
        state->ResumeTiming();
        for (int i = 0; i < backlog; ++i) accepted.push_back(co_await l.accept());
        state->PauseTiming();
        accepted.clear(); // closes them
        for (const int fd : clients) ::close(fd);
        clients.clear();
        state->ResumeTiming();
    }
}

void BM_accept(benchmark::State& state) {
    coring::loop_options o;
    o.multishot_accept = state.range(0) != 0;
    coring::event_loop loop(o);
    loop.run(accept_all(&state));
    state.counters["per_op"] =
        benchmark::Counter(backlog, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_accept)->Arg(1)->Arg(0)->UseRealTime()->Unit(benchmark::kMicrosecond);

} // namespace

int main(int argc, char** argv) {
    coring_bench::summary_reporter reporter;
    if (!coring_bench::run_benchmarks(argc, argv, reporter, 5)) return 1;
    const double multi = coring_bench::median(reporter.ns("BM_accept/1"));
    const double plain = coring_bench::median(reporter.ns("BM_accept/0"));
    std::printf("\naccept() over a backlog of %d (median of the repetitions):\n", backlog);
    std::printf("  multishot accept        %8.0f ns per accept\n", multi);
    std::printf("  an accept per call      %8.0f ns per accept\n", plain);
    std::printf("  multishot / per call    %8.2fx\n", multi / plain);
    return 0;
}
