// The seeds' concurrent fetch: the weather of three cities, first one after the other, then all at once.
//
//   weather [latency_ms]         latency_ms: how long the weather service takes per answer (default 300)
//
// So that it runs anywhere (no network), it starts its own weather service on a free local port, with a handler that
// takes `latency_ms` to answer, as a distant API would. It speaks HTTPS, as a real API does: at start-up the program
// makes a certificate authority in memory (demo_pki.hpp), the service presents a certificate it signed, and the
// client trusts that CA and verifies the service like any site. The answers are JSON, parsed with nlohmann/json
// (r.json()). The asyncio program it mirrors:
//
//   async with aiohttp.ClientSession() as s:
//       results = await asyncio.gather(*(fetch(s, city) for city in ["London", "Paris", "Tokyo"]))
//   # fetch: async with s.get(url) as r: return await r.json()
//
// Prints each answer and the time of both ways, side by side: the concurrent fetch takes one latency, not three.
// (Built without OpenSSL it speaks plain HTTP; without nlohmann/json it prints the answers as they came.)
#include <coring/coring.hpp>
#include <coring/http.hpp>
#if CORING_HTTP_TLS
#include "demo_pki.hpp"
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>
#include <vector>

using coring::task;
using coring::http::request;
using coring::http::response;
using clk = std::chrono::steady_clock;

namespace {

// The weather service: GET /weather/{city} answers after the latency, with made-up figures.
void add_weather_routes(coring::http::server& app, std::chrono::milliseconds latency) {
    app.get("/weather/{city}", [latency](request& r) -> task<response> {
        co_await coring::sleep(latency); // a slow upstream: the handler waits, the server goes on serving others
        const std::string& city = r.param("city");
        const int temperature = 5 + static_cast<int>(city.size() * 7 % 20);
        co_return response::json("{\"city\": \"" + city + "\", \"temperature_c\": " + std::to_string(temperature) +
                                 "}");
    });
}

task<std::string> fetch(coring::http::client& c, std::string base, std::string city) {
    coring::http::client_response r = co_await c.get(base + "/weather/" + city);
    if (!r.ok()) co_return city + ": HTTP " + std::to_string(r.status);
#if CORING_HTTP_HAS_JSON
    const nlohmann::json j = r.json(); // a body that is not JSON throws, naming the URL
    char line[64];
    std::snprintf(line, sizeof line, "%-8s %3d °C   ", j.at("city").get<std::string>().c_str(),
                  j.at("temperature_c").get<int>());
    co_return line + r.body; // the parsed figures, and the JSON they came from
#else
    co_return r.body;
#endif
}

double seconds_since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

task<> main_task(std::chrono::milliseconds latency) {
    coring::http::server app;
    add_weather_routes(app, latency);
    auto listener = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
#if CORING_HTTP_TLS
    // The service's certificate, signed by a CA made just now; the client trusts that CA (and the system's).
    const demo::pki pki = demo::make_pki();
    coring::tls::context service_tls = coring::tls::context::server_from_memory(pki.leaf_cert, pki.leaf_key);
    coring::http::client_options options;
    options.tls = coring::tls::context::client();
    options.tls->load_ca_pem(pki.ca_cert);
    const std::string base = "https://" + listener.local_address().to_string();
    auto serving = coring::spawn(app.serve(listener, service_tls));
#else
    coring::http::client_options options;
    const std::string base = "http://" + listener.local_address().to_string();
    auto serving = coring::spawn(app.serve(listener));
#endif
    std::printf("weather service on %s, %lld ms per answer\n", base.c_str(), static_cast<long long>(latency.count()));

    const std::vector<std::string> cities = {"London", "Paris", "Tokyo"};
    coring::http::client client(std::move(options));

    // One after the other, as blocking code (requests.get in a loop) would.
    auto t0 = clk::now();
    std::vector<std::string> one_by_one;
    for (const std::string& city : cities) one_by_one.push_back(co_await fetch(client, base, city));
    const double sequential = seconds_since(t0);

    // All at once: three requests in flight, one task each.
    t0 = clk::now();
    std::vector<task<std::string>> fetches;
    for (const std::string& city : cities) fetches.push_back(fetch(client, base, city));
    const std::vector<std::string> together = co_await coring::gather(std::move(fetches));
    const double concurrent = seconds_since(t0);

    for (std::size_t i = 0; i < cities.size(); ++i) std::printf("  %s\n", together[i].c_str());
    std::printf("\n%-22s %8s\n", "", "seconds");
    std::printf("%-22s %8.3f\n", "one after the other", sequential);
    std::printf("%-22s %8.3f\n", "all at once (gather)", concurrent);
    std::printf("speed-up: %.1fx\n", sequential / concurrent);

    co_await client.close();
    app.shutdown();
    co_await serving;
}

} // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    long ms = 300;
    if (argc > 1) {
        char* end = nullptr;
        ms = std::strtol(argv[1], &end, 10);
        if (!end || *end || ms < 0 || ms > 60000) {
            std::fprintf(stderr, "usage: weather [latency_ms 0..60000]\n");
            return 2;
        }
    }
    try {
        coring::run(main_task(std::chrono::milliseconds(ms)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "weather: %s\n", e.what());
        return 1;
    }
}
