// A load generator for echo_server: many connections at once, each sending a message and waiting for its echo, again
// and again (a closed loop), for a few seconds. Prints the round trips per second and the latency percentiles.
//
//   echo_client [address] [connections] [bytes] [seconds]      defaults: 127.0.0.1:8080 64 64 5
#include <coring/coring.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

using clk = std::chrono::steady_clock;

// One connection: send `bytes` bytes, read the echo back, and time it, until `deadline`. Returns the latency of every
// round trip, in nanoseconds.
coring::task<std::vector<std::int64_t>> client(coring::address server, std::size_t bytes, clk::time_point deadline) {
    coring::tcp_stream conn = co_await coring::tcp_stream::connect(server);
    conn.set_nodelay(true);
    const std::string message(bytes, 'x');
    std::string reply(bytes, '\0');
    std::vector<std::int64_t> latencies;
    for (auto start = clk::now(); start < deadline;) {
        co_await conn.write_all(message);
        co_await conn.read_exact(std::span(reply)); // waits for all `bytes` bytes (they may come in pieces)
        const auto end = clk::now();
        if (reply != message) throw std::runtime_error("the echo differs from the message");
        latencies.push_back(std::chrono::nanoseconds(end - start).count());
        start = end;
    }
    co_await conn.close();
    co_return latencies;
}

// Parses a positive integer argument; false when it is not one.
bool parse_count(std::string_view text, std::size_t& out) {
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && out > 0;
}

coring::task<> main_task(coring::address server, std::size_t connections, std::size_t bytes, std::size_t seconds) {
    const auto start = clk::now();
    const auto deadline = start + std::chrono::seconds(seconds);
    std::vector<coring::task<std::vector<std::int64_t>>> clients;
    for (std::size_t i = 0; i < connections; ++i) clients.push_back(client(server, bytes, deadline));
    // All connections run concurrently; gather yields their results in order (and fails if one of them fails).
    const std::vector<std::vector<std::int64_t>> results = co_await coring::gather(std::move(clients));
    const std::chrono::duration<double> elapsed = clk::now() - start;

    std::vector<std::int64_t> all;
    for (const auto& r : results) all.insert(all.end(), r.begin(), r.end());
    if (all.empty()) throw std::runtime_error("no round trip completed");
    auto percentile = [&all](double p) {
        auto nth = all.begin() + static_cast<std::ptrdiff_t>(p * static_cast<double>(all.size() - 1));
        std::nth_element(all.begin(), nth, all.end());
        return static_cast<double>(*nth) / 1000.0; // in microseconds
    };
    std::printf("%zu connections, %zu-byte messages, %.2f s: %zu round trips\n", connections, bytes, elapsed.count(),
                all.size());
    std::printf("%.0f round trips/s, latency p50 %.1f us, p99 %.1f us\n",
                static_cast<double>(all.size()) / elapsed.count(), percentile(0.50), percentile(0.99));
}

int main(int argc, char** argv) {
    const char* usage = "usage: echo_client [address] [connections] [bytes] [seconds]\n"
                        "       defaults:   127.0.0.1:8080 64 64 5\n";
    std::string where = argc > 1 ? argv[1] : "127.0.0.1:8080";
    std::size_t connections = 64, bytes = 64, seconds = 5;
    if (argc > 5 || (argc > 2 && !parse_count(argv[2], connections)) || (argc > 3 && !parse_count(argv[3], bytes)) ||
        (argc > 4 && !parse_count(argv[4], seconds))) {
        std::fputs(usage, stderr);
        return 2;
    }
    coring::address server;
    try {
        server = coring::address::parse(where);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "%s\n%s", e.what(), usage);
        return 2;
    }
    try {
        coring::run(main_task(server, connections, bytes, seconds));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_client: %s\n", e.what());
        return 1;
    }
}
