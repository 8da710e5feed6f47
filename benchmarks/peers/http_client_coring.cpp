// The HTTP client workload of benchmarks/compare/http_client_vs_aiohttp.py: CONNS tasks share one coring::http::client
// and each fetches URL again and again (keep-alive, one request in flight per task) for SECONDS; prints the rate.
//   http_client_coring [--cacert CA.pem] URL CONNS SECONDS
// --cacert: for https:// URLs, trust the CA certificate(s) in CA.pem instead of the system store (needs coring::http
// built with coring::tls, CORING_HTTP_TLS).
// Prints: requests=... seconds=... rps=... errors=...
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
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

coring::task<> measure(std::string url, long conns, double seconds, std::string cacert) {
    coring::http::client_options o;
    o.max_connections_per_host = static_cast<std::size_t>(conns);
    o.max_idle_per_host = static_cast<std::size_t>(conns);
#if CORING_HTTP_TLS
    if (!cacert.empty()) {
        o.tls = coring::tls::context::client();
        o.tls->load_ca(cacert);
    }
#else
    if (!cacert.empty()) throw std::runtime_error("--cacert: built without TLS (CORING_HTTP_TLS)");
#endif
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
    std::string cacert;
    std::vector<char*> pos;
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--cacert" && i + 1 < argc) cacert = argv[++i];
        else pos.push_back(argv[i]);
    }
    if (pos.size() != 3) {
        std::fprintf(stderr, "usage: %s [--cacert CA.pem] URL CONNS SECONDS\n", argv[0]);
        return 2;
    }
    const long conns = std::strtol(pos[1], nullptr, 10);
    const double seconds = std::strtod(pos[2], nullptr);
    if (conns <= 0 || conns > 10000 || seconds <= 0) {
        std::fprintf(stderr, "http_client_coring: bad CONNS or SECONDS\n");
        return 2;
    }
    try {
        coring::run(measure(pos[0], conns, seconds, std::move(cacert)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "http_client_coring: %s\n", e.what());
        return 1;
    }
}
