// Many network requests at once: tries to connect to every port of a range concurrently, and lists the open ones.
//
//   port_scan host first_port last_port [concurrency] [timeout_ms]      defaults: 256 connections at a time, 500 ms
//
// Every port gets a task of its own; a semaphore lets `concurrency` of them connect at a time, and coring::timeout
// gives up on a port that does not answer (a firewall dropping the packets) after `timeout_ms`.
#include <coring/coring.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

// Whether `target` accepts a connection. At most `slots` probes connect at a time.
// (`slots` points into main_task's frame, which awaits every probe: it outlives them.)
coring::task<bool> probe(coring::address target, std::chrono::milliseconds limit, coring::semaphore* slots) {
    co_await slots->acquire(); // wait for a free slot
    bool open = false;
    try {
        auto attempt = coring::timeout(limit, coring::tcp_stream::connect(target));
        coring::tcp_stream conn = co_await attempt;
        open = true;
        co_await conn.close();
    } catch (const coring::timeout_error&) { // no answer in time: filtered, or no such host
    } catch (const std::system_error&) {     // refused (closed), unreachable...
    }
    slots->release();
    co_return open;
}

coring::task<> main_task(std::string host, std::uint16_t first, std::uint16_t last, std::size_t concurrency,
                         std::chrono::milliseconds limit) {
    // Resolve the name once (on a worker thread: getaddrinfo blocks); prefer IPv4, as most scanners do.
    const std::vector<coring::address> found = co_await coring::resolve(host, first);
    const auto v4 = std::find_if(found.begin(), found.end(), [](const coring::address& a) { return a.is_ipv4(); });
    const coring::address target = v4 != found.end() ? *v4 : found.front();
    std::printf("scanning %s, ports %u-%u, %zu at a time\n", target.to_string().c_str(), unsigned(first),
                unsigned(last), concurrency);

    const auto start = std::chrono::steady_clock::now();
    coring::semaphore slots(static_cast<std::ptrdiff_t>(concurrency));
    std::vector<coring::task<bool>> probes;
    for (unsigned port = first; port <= last; ++port)
        probes.push_back(probe(target.with_port(static_cast<std::uint16_t>(port)), limit, &slots));
    // All probes run concurrently (the semaphore keeps `concurrency` in flight); results come back in port order.
    const std::vector<bool> open = co_await coring::gather(std::move(probes));
    const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;

    std::size_t count = 0;
    for (std::size_t i = 0; i < open.size(); ++i) {
        if (!open[i]) continue;
        std::printf("%zu open\n", first + i);
        ++count;
    }
    std::printf("%zu ports in %.0f ms: %zu open\n", open.size(), elapsed.count(), count);
}

// Parses an integer in [lo, hi]; false when the text is not one.
bool parse(std::string_view text, unsigned long lo, unsigned long hi, unsigned long& out) {
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && out >= lo && out <= hi;
}

int main(int argc, char** argv) {
    unsigned long first = 0, last = 0, concurrency = 256, timeout_ms = 500;
    if (argc < 4 || argc > 6 || !parse(argv[2], 1, 65535, first) || !parse(argv[3], first, 65535, last) ||
        (argc > 4 && !parse(argv[4], 1, 1'000'000, concurrency)) ||
        (argc > 5 && !parse(argv[5], 1, 3'600'000, timeout_ms))) {
        std::fputs("usage: port_scan host first_port last_port [concurrency] [timeout_ms]\n"
                   "       defaults: concurrency 256, timeout 500 ms\n",
                   stderr);
        return 2;
    }
    try {
        coring::run(main_task(argv[1], static_cast<std::uint16_t>(first), static_cast<std::uint16_t>(last), concurrency,
                              std::chrono::milliseconds(timeout_ms)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "port_scan: %s\n", e.what());
        return 1;
    }
}
