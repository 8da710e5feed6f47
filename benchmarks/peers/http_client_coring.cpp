// The HTTP client workload of benchmarks/compare/http_client_vs_aiohttp.py: CONNS tasks share one coring::http::client
// and each fetches URL again and again (keep-alive, one request in flight per task) for SECONDS; prints the rate.
//   http_client_coring URL CONNS SECONDS
// Prints: requests=... seconds=... rps=... errors=...
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

namespace {

using clk = std::chrono::steady_clock;

struct counters {
    std::uint64_t requests = 0, errors = 0, bytes = 0;
    bool stop = false;
};

coring::task<> worker(coring::http::client& c, const std::string& url, counters& n) {
    while (!n.stop) {
        try {
            coring::http::client_response r = co_await c.get(url);
            if (r.status != 200) ++n.errors;
            n.bytes += r.body.size();
            ++n.requests;
        } catch (const coring::cancelled_error&) {
            throw;
        } catch (const std::exception& e) {
            if (++n.errors == 1) std::fprintf(stderr, "http_client_coring: %s\n", e.what());
        }
    }
}

coring::task<> stopper(counters& n, double seconds) {
    co_await coring::sleep(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds)));
    n.stop = true;
}

coring::task<> measure(std::string url, long conns, double seconds) {
    coring::http::client_options o;
    o.max_connections_per_host = static_cast<std::size_t>(conns);
    o.max_idle_per_host = static_cast<std::size_t>(conns);
    coring::http::client c(o);
    counters n;
    {
        // Warm-up: open the connections.
        std::vector<coring::task<>> warm;
        counters w;
        for (long i = 0; i < conns; ++i) warm.push_back(worker(c, url, w));
        warm.push_back(stopper(w, 0.5));
        co_await coring::gather(std::move(warm));
    }
    std::vector<coring::task<>> tasks;
    for (long i = 0; i < conns; ++i) tasks.push_back(worker(c, url, n));
    tasks.push_back(stopper(n, seconds));
    const auto t0 = clk::now();
    co_await coring::gather(std::move(tasks));
    const double s = std::chrono::duration<double>(clk::now() - t0).count();
    std::printf("requests=%llu seconds=%.3f rps=%.0f errors=%llu\n", static_cast<unsigned long long>(n.requests), s,
                static_cast<double>(n.requests) / s, static_cast<unsigned long long>(n.errors));
    co_await c.close();
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s URL CONNS SECONDS\n", argv[0]);
        return 2;
    }
    const long conns = std::strtol(argv[2], nullptr, 10);
    const double seconds = std::strtod(argv[3], nullptr);
    if (conns <= 0 || conns > 10000 || seconds <= 0) {
        std::fprintf(stderr, "http_client_coring: bad CONNS or SECONDS\n");
        return 2;
    }
    try {
        coring::run(measure(argv[1], conns, seconds));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "http_client_coring: %s\n", e.what());
        return 1;
    }
}
