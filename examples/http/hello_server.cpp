// FastAPI's "Hello, World", with coring::http: a route with a path parameter and a JSON-looking reply.
//
//   hello_server [address] [--tls CERT KEY] [--threads N] [--stats]
//                                address: 127.0.0.1:8080 (the default), [::1]:9000, or a bare port (8080);
//                                port 0 picks a free port. The first line printed is the address it listens on.
//                                --tls: serve HTTPS with the certificate chain CERT (PEM, leaf first) and its key KEY
//                                --threads N: N event loops, one per thread (1, the default: one loop, no threads),
//                                  each with its own server and its own listener on the same port (SO_REUSEPORT)
//                                --stats: at exit, print how many connections each loop accepted
//
//   curl http://127.0.0.1:8080/                  -> {"message": "Hello, World"}
//   curl http://127.0.0.1:8080/hello/Ada         -> {"message": "Hello, Ada"}
//   curl -d 'some text' http://127.0.0.1:8080/echo
//   curl http://127.0.0.1:8080/work              -> {"hash": "..."} after about 50 us of CPU (for benchmarks)
//
// HTTPS, with a certificate for localhost (a self-signed one made with the openssl command here):
//   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost
//       -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout key.pem -out cert.pem       (one line)
//   hello_server 8443 --tls cert.pem key.pem
//   curl --cacert cert.pem https://localhost:8443/hello/Ada
//
// The FastAPI program it mirrors:
//   @app.get("/")                 async def root(): return {"message": "Hello, World"}
//   @app.get("/hello/{name}")     async def hello(name: str): return {"message": f"Hello, {name}"}
//
// Ctrl-C or SIGTERM stops it gracefully: requests in progress finish, idle connections close, then it exits 0. With
// --threads, loop 0 hears the signal and shuts every loop's server down that way.
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using coring::task;
using coring::http::request;
using coring::http::response;

namespace {

// "8080" means 127.0.0.1:8080; anything else is parsed as an address ("0.0.0.0:80", "[::]:8080").
coring::address listen_address(const std::string& arg) {
    if (arg.find(':') == std::string::npos) return coring::address::parse("127.0.0.1:" + arg);
    return coring::address::parse(arg);
}

// A JSON string literal: quotes, backslashes and control characters escaped.
std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

// A chain of multiply-xorshift rounds: each depends on the last, so the compiler can neither skip nor overlap them.
std::uint64_t hash_rounds(std::uint64_t h, std::uint64_t rounds) {
    for (std::uint64_t i = 0; i < rounds; ++i) {
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    return h;
}

// Rounds that take about 50 us here, measured once at start-up, so that /work costs the same whatever the build or
// the machine: a stand-in for a handler that computes (templates, JSON, a password hash) rather than waits.
std::uint64_t work_rounds = 0;

void calibrate_work() {
    constexpr std::uint64_t probe = 2'000'000;
    double best = 1e9; // the fastest of a few tries: preemption only ever adds time
    for (int i = 0; i < 5; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::uint64_t h = hash_rounds(static_cast<std::uint64_t>(i) + 1, probe);
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - t0;
        if (h != 0) best = std::min(best, took.count()); // uses h: the rounds are not dead code
    }
    work_rounds = static_cast<std::uint64_t>(static_cast<double>(probe) * 50e-6 / best) + 1;
}

// The routes, the same on every loop's server.
void add_routes(coring::http::server& app) {
    app.get("/", [](request&) -> task<response> { co_return response::json(R"({"message": "Hello, World"})"); });
    app.get("/hello/{name}", [](request& r) -> task<response> {
        co_return response::json("{\"message\": " + json_string("Hello, " + r.param("name")) + "}");
    });
    app.post("/echo", [](request& r) -> task<response> { co_return response::text(r.body); });
    app.get("/work", [](request&) -> task<response> {
        char hex[32];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash_rounds(42, work_rounds)));
        co_return response::json(std::string(R"({"hash": ")") + hex + "\"}");
    });
}

/// The TLS certificate and key files of --tls.
struct tls_files {
    std::string cert, key;
};

coring::listen_options listener_options(bool reuse_port) {
    coring::listen_options options;
    options.backlog = 4096;
    options.reuse_port = reuse_port;
    return options;
}

void print_stats(const std::vector<std::size_t>& accepted) {
    std::printf("accepted:");
    for (std::size_t i = 0; i < accepted.size(); ++i) std::printf(" loop %zu: %zu", i, accepted[i]);
    std::printf("\n");
}

task<> main_task(coring::http::server& app, std::string where, std::optional<tls_files> tls) {
    auto stop = coring::wait_signal(SIGINT, SIGTERM); // from here on, the signals wait for us

    auto listener = coring::tcp_listener::bind(listen_address(where), listener_options(false));
#if CORING_HTTP_TLS
    std::optional<coring::tls::context> ctx;
    if (tls) ctx = coring::tls::context::server(tls->cert, tls->key); // tls::error naming the file that is wrong
#else
    if (tls) throw std::runtime_error("--tls: this build has no TLS (coring::tls needs OpenSSL 3)");
#endif
    std::printf("listening on %s://%s\n", tls ? "https" : "http", listener.local_address().to_string().c_str());

    auto stopper = coring::spawn([](coring::http::server& app, coring::signal_awaitable stop) -> task<> {
        const int sig = co_await stop;
        std::printf("stopping on %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        app.shutdown();
    }(app, std::move(stop)));
#if CORING_HTTP_TLS
    if (ctx) {
        co_await app.serve(listener, std::move(*ctx));
        co_return;
    }
#endif
    co_await app.serve(listener);
}

// ---- --threads N: N loops, each with its own server and listener
// ------------------------------------------------------

// What the loops share, set up before they start; loop i touches only its own server and listener from then on.
struct cluster {
    coring::runtime* rt = nullptr;
    std::vector<std::unique_ptr<coring::http::server>> apps;
    std::vector<coring::tcp_listener> listeners;
#if CORING_HTTP_TLS
    std::vector<coring::tls::context> contexts; // one copy per loop (they share the OpenSSL context)
#endif
};

// Runs on the server's own loop (through run_on). A shutdown() that comes before serve() still counts.
void shut_down(coring::http::server* app) { app->shutdown(); }

// Loop 0's: waits for SIGINT or SIGTERM (blocked in every thread since before the loops started, so it waits, pending,
// for this signalfd) and shuts every loop's server down, its own included.
task<> relay_signal(cluster* c) {
    auto signals = coring::wait_signal(SIGINT, SIGTERM);
    const int sig = co_await signals;
    std::printf("stopping on %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    for (std::size_t i = 0; i < c->rt->size(); ++i)
        co_await coring::run_on(c->rt->loop(i), &shut_down, c->apps[i].get());
}

task<> loop_main(cluster* c, std::size_t i) {
    std::optional<coring::join_handle<void>> relay;
    if (i == 0) relay = coring::spawn(relay_signal(c));
#if CORING_HTTP_TLS
    if (!c->contexts.empty()) {
        co_await c->apps[i]->serve(c->listeners[i], std::move(c->contexts[i]));
    } else {
        co_await c->apps[i]->serve(c->listeners[i]);
    }
#else
    co_await c->apps[i]->serve(c->listeners[i]);
#endif
    if (relay) co_await *relay; // the other loops may not have had their shutdown yet
}

int run_threads(const std::string& where, std::size_t threads, const std::optional<tls_files>& tls, bool stats) {
    // Blocked before the loop threads exist, so that they inherit the mask: a signal then waits, pending, for loop 0's
    // signalfd. (The runtime's own stop_signals would cancel every loop at once instead of a graceful shutdown.)
    sigset_t signals;
    ::sigemptyset(&signals);
    ::sigaddset(&signals, SIGINT);
    ::sigaddset(&signals, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    cluster c;
#if CORING_HTTP_TLS
    if (tls) {
        auto ctx = coring::tls::context::server(tls->cert, tls->key);
        // Set here, once: serve() would set it on the shared OpenSSL context from every loop at the same time.
        ctx.set_alpn({"http/1.1"});
        c.contexts.assign(threads, ctx);
    }
#else
    if (tls) throw std::runtime_error("--tls: this build has no TLS (coring::tls needs OpenSSL 3)");
#endif
    // Loop 0's listener first, so that port 0 is resolved; the others join its address.
    c.listeners.push_back(coring::tcp_listener::bind(listen_address(where), listener_options(true)));
    const coring::address at = c.listeners[0].local_address();
    for (std::size_t i = 1; i < threads; ++i)
        c.listeners.push_back(coring::tcp_listener::bind(at, listener_options(true)));
    for (std::size_t i = 0; i < threads; ++i) {
        c.apps.push_back(std::make_unique<coring::http::server>());
        add_routes(*c.apps.back());
    }
    std::printf("listening on %s://%s\n", tls ? "https" : "http", at.to_string().c_str());

    coring::runtime_options options;
    options.stop_signals = {};
    coring::runtime rt(threads, options);
    c.rt = &rt;
    rt.run([&c](std::size_t i) { return loop_main(&c, i); });
    if (stats) {
        std::vector<std::size_t> accepted;
        for (const auto& app : c.apps) accepted.push_back(app->accepted());
        print_stats(accepted);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // line-buffered even into a pipe: scripts read the address at once
    std::string where = "127.0.0.1:8080";
    std::optional<tls_files> tls;
    std::size_t threads = 1;
    bool stats = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--tls") == 0 && i + 2 < argc) {
            tls = tls_files{argv[i + 1], argv[i + 2]};
            i += 2;
        } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
            threads = static_cast<std::size_t>(std::atoi(argv[++i]));
        } else if (std::strcmp(argv[i], "--stats") == 0) {
            stats = true;
        } else if (argv[i][0] != '-') {
            where = argv[i];
        } else {
            std::fprintf(stderr, "usage: hello_server [address] [--tls CERT KEY] [--threads N] [--stats]\n");
            return 2;
        }
    }
    calibrate_work();
    try {
        if (threads > 1) return run_threads(where, threads, tls, stats);
        coring::http::server app;
        add_routes(app);
        coring::run(main_task(app, where, std::move(tls)));
        if (stats) print_stats({app.accepted()});
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hello_server: %s\n", e.what());
        return 1;
    }
}
