// 10,000 WebSocket connections at once, a broadcast to all of them every 100 ms for 10 s: every message reaches
// every connection, in order, and the server's memory per connection is reported.
//
// A program of its own (registered with add_test), because the clients run in a second process: the server's
// memory per connection is then the growth of this process's resident set, and 20,000 descriptors are split over
// two processes' limits. The same binary is both:
//
//   coring_websocket_crowd [CONNECTIONS [BROADCASTS]]           the server and the test (10,000 and 100)
//   coring_websocket_crowd --clients PORT CONNECTIONS BROADCASTS
//
// The server is the chat example's pattern: each connection has an outbox (unbounded here: the test wants every
// message delivered, so none may be dropped) drained by its own writer task, so a broadcast queues the message
// 10,000 times and returns; the writers then send in parallel, batched by the loop. Exit code 0 when every message
// arrived, 1 with the reason otherwise, 77 (skipped) only when the descriptor limit cannot be raised far enough.
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using coring::task;
using coring::http::websocket;
using coring::http::ws_message;

/// Raises the soft descriptor limit to `need` (and the hard one, when allowed: CI runs as root). False if impossible.
bool enough_descriptors(rlim_t need) {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return false;
    if (r.rlim_cur >= need) return true;
    if (r.rlim_max < need) r.rlim_max = need; // may fail without CAP_SYS_RESOURCE: then the hard limit decides
    r.rlim_cur = need;
    if (::setrlimit(RLIMIT_NOFILE, &r) == 0) return true;
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_max < need) return false;
    r.rlim_cur = need;
    return ::setrlimit(RLIMIT_NOFILE, &r) == 0;
}

long rss_kib() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return 0;
}

/// The text of broadcast number i: its number first, so a client can check the order.
std::string message(std::size_t i) {
    std::string m = std::to_string(i) + ": the crowd hears the news";
    return m;
}

// --- clients ---------------------------------------------------------------------------------------------------------

struct tally {
    std::size_t delivered = 0;
    std::size_t complete = 0; // connections that got every message, in order, then the server's close
    std::string first_problem;
};

task<> listen_to(websocket ws, std::size_t broadcasts, tally& t) {
    std::size_t next = 0;
    std::string problem;
    try {
        for (;;) {
            ws_message m = co_await ws.receive();
            if (m.is_close()) break;
            if (next >= broadcasts || m.data != message(next)) {
                problem = "message " + std::to_string(next) + " missing or out of order: got '" + m.data + "'";
                break;
            }
            ++next;
            ++t.delivered;
        }
    } catch (const std::exception& e) {
        problem = e.what();
    }
    if (problem.empty() && next != broadcasts)
        problem = "closed after " + std::to_string(next) + " of " + std::to_string(broadcasts) + " messages";
    if (problem.empty()) ++t.complete;
    else if (t.first_problem.empty()) t.first_problem = problem;
    co_await ws.close();
}

int clients(const std::string& port, std::size_t n, std::size_t broadcasts) {
    if (!enough_descriptors(n + 64)) {
        std::printf("too few descriptors for %zu connections\n", n);
        return 77;
    }
    tally t;
    coring::run([&]() -> task<> {
        coring::http::client client;
        const std::string url = "ws://127.0.0.1:" + port + "/crowd";
        std::vector<coring::join_handle<void>> listeners;
        listeners.reserve(n);
        while (listeners.size() < n) {
            // In batches: 10,000 handshakes at once would overflow the listen backlog for nothing.
            std::vector<task<websocket>> batch;
            for (std::size_t i = 0; i < 200 && listeners.size() + batch.size() < n; ++i)
                batch.push_back(client.websocket(url));
            auto opened = co_await coring::gather(std::move(batch));
            for (auto& ws : opened) listeners.push_back(coring::spawn(listen_to(std::move(ws), broadcasts, t)));
        }
        std::printf("connected %zu\n", listeners.size());
        std::fflush(stdout);
        for (auto& l : listeners) co_await l;
    }());
    std::printf("delivered %zu complete %zu\n", t.delivered, t.complete);
    if (!t.first_problem.empty()) std::printf("problem: %s\n", t.first_problem.c_str());
    return t.complete == n && t.delivered == n * broadcasts ? 0 : 1;
}

// --- server ----------------------------------------------------------------------------------------------------------

struct member {
    explicit member(websocket& w) : ws(w) {}
    websocket& ws;
    coring::queue<std::shared_ptr<const std::string>> outbox; // unbounded: nothing may be dropped here
};

struct crowd {
    std::list<member*> members;
    coring::event all_joined;
    std::size_t expected = 0;
    std::size_t send_failures = 0;
};

/// Sends a member's outbox in order; once the outbox is closed and empty, closes the connection (1000).
task<> writer(member& m, crowd& c) {
    try {
        for (;;) {
            std::shared_ptr<const std::string> text = co_await m.outbox.pop();
            co_await m.ws.send_text(*text);
        }
    } catch (const coring::queue_closed&) {
    } catch (const std::exception&) {
        ++c.send_failures;
    }
    const std::string_view why = "that was the news";
    co_await m.ws.close(coring::http::close_code::normal, why);
}

task<> join(crowd& c, websocket& ws) {
    member me(ws);
    c.members.push_back(&me);
    if (c.members.size() == c.expected) c.all_joined.set();
    auto sending = coring::spawn(writer(me, c));
    try {
        // The clients send nothing: this sees the close that answers the writer's.
        for (;;) {
            ws_message m = co_await ws.receive();
            if (m.is_close()) break;
        }
    } catch (const std::exception&) {}
    c.members.remove(&me);
    me.outbox.close();
    co_await sending;
}

int server(std::size_t n, std::size_t broadcasts) {
    if (!enough_descriptors(n + 256)) {
        std::printf("skipped: the descriptor limit cannot be raised to %zu\n", n + 256);
        return 77;
    }
    crowd c;
    c.expected = n;
    int status = 1;
    coring::run([&]() -> task<> {
        coring::listen_options lo;
        lo.backlog = 4096;
        auto listener = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"), lo);
        const std::string port = std::to_string(listener.local_address().port());
        coring::http::server app;
        app.websocket("/crowd", [&c](coring::http::request&, websocket& ws) -> task<> { co_await join(c, ws); });
        auto serving = coring::spawn(app.serve(listener));
        co_await coring::sleep(100ms); // warm up before the baseline
        const long before = rss_kib();

        coring::process_options po;
        po.out = coring::stdio::pipe;
        const std::vector<std::string> argv{"/proc/self/exe", "--clients", port, std::to_string(n),
                                            std::to_string(broadcasts)};
        coring::process clients = coring::process::spawn(argv, po);
        const auto t0 = std::chrono::steady_clock::now();
        // Every connection is in (or the clients failed: then all_joined never comes, and their output says why).
        auto joined = coring::spawn([](crowd& cr) -> task<> { co_await cr.all_joined.wait(); }(c));
        const std::string newline = "\n"; // named: a temporary in a co_await operand is what GCC 12 mis-relocates
        auto first = co_await clients.stdout_stream().read_until(newline);
        (void)co_await coring::timeout(120s, std::move(joined));
        const double connect_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const long after = rss_kib();
        std::printf("%zu connections in %.1f s (clients: %s); server memory: %.1f KiB per connection (VmRSS %ld -> "
                    "%ld KiB)\n",
                    c.members.size(), connect_s, first.substr(0, first.size() - 1).c_str(),
                    static_cast<double>(after - before) / static_cast<double>(n), before, after);

        const auto b0 = std::chrono::steady_clock::now();
        auto tick = b0;
        std::size_t late = 0;
        for (std::size_t i = 0; i < broadcasts; ++i) {
            auto text = std::make_shared<const std::string>(message(i));
            for (member* m : c.members) (void)m->outbox.try_push(text);
            tick += 100ms;
            if (std::chrono::steady_clock::now() > tick) ++late;
            co_await coring::sleep_until(tick);
        }
        for (member* m : c.members) m->outbox.close();
        std::string rest = co_await clients.stdout_stream().read_until(newline);
        std::string problem = co_await clients.stdout_stream().read_until(newline);
        while (!rest.empty() && rest.back() == '\n') rest.pop_back();
        while (!problem.empty() && problem.back() == '\n') problem.pop_back();
        const int code = co_await clients.wait();
        const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - b0).count();
        std::printf("%zu broadcasts of one message to %zu connections (every 100 ms; %zu ticks started late): %s%s%s; "
                    "all delivered and closed %.1f s after the first; clients exited %d; %zu sends failed\n",
                    broadcasts, n, late, rest.c_str(), problem.empty() ? "" : "; ", problem.c_str(), took, code,
                    c.send_failures);
        status = code == 0 && c.send_failures == 0 &&
                         rest == "delivered " + std::to_string(n * broadcasts) + " complete " + std::to_string(n)
                     ? 0
                     : 1;
        app.shutdown(1s);
        co_await serving;
    }());
    std::printf("%s\n", status == 0 ? "PASS" : "FAIL");
    return status;
}

} // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        if (argc == 5 && std::string(argv[1]) == "--clients")
            return clients(argv[2], std::stoul(argv[3]), std::stoul(argv[4]));
        const std::size_t n = argc > 1 ? std::stoul(argv[1]) : 10000;
        const std::size_t broadcasts = argc > 2 ? std::stoul(argv[2]) : 100;
        return server(n, broadcasts);
    } catch (const std::exception& e) {
        std::printf("FAIL: %s\n", e.what());
        return 1;
    }
}
