// A TCP echo server: every connection gets a task of its own that sends back whatever it receives.
//
//   echo_server [address] [--log PATH] [--threads N] [--stats]
//                                address: 127.0.0.1:8080 (the default), [::1]:9000, or a bare port (8080);
//                                port 0 picks a free port. The first line printed is the address it listens on.
//                                --log PATH appends a line to PATH for every connection opened and closed:
//                                  2025-01-31T12:00:00.123Z 127.0.0.1:51234 open
//                                  2025-01-31T12:00:01.456Z 127.0.0.1:51234 close, 5 bytes echoed
//                                --threads N: N event loops, one per thread (1, the default: one loop, no threads).
//                                  Each loop has a listener of its own on the same port (SO_REUSEPORT): the kernel
//                                  spreads the connections over them, and a connection stays on the loop that
//                                  accepted it.
//                                --stats: at exit, print how many connections each loop accepted.
//
// Ctrl-C or SIGTERM stops it gracefully: it stops accepting, cancels the open connections, waits for them to end,
// writes what is left of the log to the file and syncs it, prints "stopped: SIGINT" (or SIGTERM) and exits 0 (1 if
// the log could not be written: the echoes went on regardless). With --threads, loop 0 hears the signal and tells
// every loop to stop that way.
//
// The log is written through coring too, without ever holding up an echo: a connection only queues its line
// (try_push never waits) and one logger task writes whatever lines have piled up with a single write, so a slow disk
// makes the batches bigger, not the echoes slower.
#include <coring/coring.hpp>

#include <signal.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

// The --log file and the lines on their way to it.
struct access_log {
    coring::file file;
    coring::queue<std::string> lines; // unbounded: queuing a line must never wait

    // Queues "<time> <peer> <event>\n". noexcept: a line that cannot be built (out of memory) is dropped rather than
    // ending the connection it is about; once the queue is closed (shutdown, or the log failed) try_push refuses it.
    void add(const coring::address& peer, std::string_view event) noexcept {
        try {
            std::string line = timestamp();
            line += ' ';
            line += peer.to_string();
            line += ' ';
            line += event;
            line += '\n';
            (void)lines.try_push(std::move(line));
        } catch (const std::exception&) {}
    }

    // "2025-01-31T12:00:00.123Z": UTC, so that the log reads the same whatever the server's time zone.
    static std::string timestamp() {
        const auto now = std::chrono::system_clock::now();
        const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
        std::tm utc{};
        ::gmtime_r(&seconds, &utc);
        std::array<char, 64> text{};
        const std::size_t n = std::strftime(text.data(), text.size(), "%Y-%m-%dT%H:%M:%S", &utc);
        std::snprintf(text.data() + n, text.size() - n, ".%03dZ", static_cast<int>(ms));
        return text.data();
    }
};

// Logs a connection's "close" line however the connection ends: the client left, the connection failed, or the
// server is stopping and cancelled it (a try/catch would miss the cancellation, which echo() does not catch).
struct close_line {
    access_log* log;
    const coring::address& peer;
    const std::uint64_t& echoed;
    ~close_line() {
        if (log) log->add(peer, "close, " + std::to_string(echoed) + " bytes echoed");
    }
};

// "8080" means 127.0.0.1:8080; anything else is parsed as an address ("0.0.0.0:80", "[::]:8080").
coring::address listen_address(const std::string& arg) {
    if (arg.find(':') == std::string::npos) return coring::address::parse("127.0.0.1:" + arg);
    return coring::address::parse(arg);
}

// One client: read what arrived, write it back, until the client closes the connection (read returns 0).
// `log` is null without --log. (It points into main_task's frame, which outlives every connection.)
coring::task<> echo(coring::tcp_stream conn, access_log* log) {
    std::array<std::byte, 16 * 1024> buf; // lives in the coroutine frame
    std::uint64_t echoed = 0;
    if (log) log->add(conn.peer_address(), "open");
    const close_line logged{log, conn.peer_address(), echoed};
    try {
        for (;;) {
            const std::size_t n = co_await conn.read(buf);
            if (n == 0) break;
            co_await conn.write_all(std::span(buf).first(n));
            echoed += n;
        }
    } catch (const std::system_error& e) {
        // A reset or broken connection ends this client only ("recv from 127.0.0.1:51234: Connection reset...").
        std::fprintf(stderr, "%s\n", e.what());
    }
}

// Accepts connections until cancelled, one echo task each. The connections live in a task_group: when the server is
// cancelled, joining the group cancels the connections still open and waits until they have finished.
// `accepted` counts the connections (for --stats).
coring::task<> serve(coring::tcp_listener listener, access_log* log, std::uint64_t* accepted) {
    coring::task_group connections;
    try {
        for (;;) {
            coring::tcp_stream conn = co_await listener.accept();
            ++*accepted;
            conn.set_nodelay(true); // answer small requests at once (no Nagle delay)
            connections.spawn(echo(std::move(conn), log));
        }
    } catch (const coring::cancelled_error&) {
        // Stop accepting; the join below cancels the connections (co_await is not allowed inside a catch block).
    }
    co_await connections.join();
}

// Serves until `stop` yields a signal and returns it; when_any then cancels the server and waits until it has wound
// down, so that every connection has queued its "close" line before the logger is told that no more lines will come.
// `stop` is the signal itself with one loop, and loop 0's word with --threads.
template <class Stop>
coring::task<int> serve_until_stopped(coring::tcp_listener listener, Stop stop, access_log* log,
                                      std::uint64_t* accepted) {
    auto server = serve(std::move(listener), log, accepted);
    auto first = co_await coring::when_any(std::move(server), std::move(stop));
    if (log) log->lines.close(); // the logger writes the lines still queued, then finishes
    co_return std::get<1>(first);
}

// The logger: writes the queued lines, as many at a time as have piled up, until the queue is closed and empty; then
// syncs and closes the file. A failing log (disk full...) is reported and abandoned; the echo service goes on.
// Returns whether every line reached the file.
coring::task<bool> write_log(access_log* log) {
    std::optional<std::system_error> failure;
    try {
        for (;;) {
            std::string batch = co_await log->lines.pop();
            while (std::optional<std::string> more = log->lines.try_pop()) batch += *more;
            co_await log->file.write_all(batch);
        }
    } catch (const coring::queue_closed&) {
        // Closed by serve_until_stopped, and empty: everything was written.
    } catch (const std::system_error& e) {
        failure = e;
    }
    if (!failure) {
        try {
            co_await log->file.sync();
            co_await log->file.close();
        } catch (const std::system_error& e) {
            failure = e;
        }
    }
    if (failure) {
        std::fprintf(stderr, "echo_server: %s; the log is incomplete\n", failure->what());
        log->lines.close(); // refuse further lines at once rather than let them pile up unwritten
        co_return false;
    }
    co_return true;
}

// Opens the --log file for appending (each loop of --threads opens its own: O_APPEND keeps their batches whole).
coring::task<> open_log(access_log& log, const std::string& path) {
    try {
        log.file = co_await coring::file::open(path, coring::open_mode::write | coring::open_mode::create |
                                                         coring::open_mode::append);
    } catch (const std::system_error& e) {
        throw std::runtime_error("cannot open the log " + path + ": " + e.code().message());
    }
}

// How a loop's server ended: the signal that stopped it, and whether its log got every line.
struct served {
    int signal = 0;
    bool logged = true;
};

// A loop's server and, with --log, its logger beside it; returns once both are done: the server stopped, the log
// synced.
template <class Stop>
coring::task<served> serve_and_log(coring::tcp_listener listener, Stop stop, access_log* log, std::uint64_t* accepted) {
    if (!log) {
        const int sig = co_await serve_until_stopped(std::move(listener), std::move(stop), nullptr, accepted);
        co_return served{sig, true};
    }
    auto [sig, ok] = co_await coring::gather(serve_until_stopped(std::move(listener), std::move(stop), log, accepted),
                                             write_log(log));
    co_return served{sig, ok};
}

// The listener's options: room for a burst of connections (capped by net.core.somaxconn); with --threads, one
// listener per loop on the same port.
coring::listen_options listener_options(bool reuse_port) {
    coring::listen_options options;
    options.backlog = 4096;
    options.reuse_port = reuse_port;
    return options;
}

void print_stats(const std::vector<std::uint64_t>& accepted) {
    std::printf("accepted:");
    for (std::size_t i = 0; i < accepted.size(); ++i)
        std::printf(" loop %zu: %llu", i, static_cast<unsigned long long>(accepted[i]));
    std::printf("\n");
}

// One loop, no threads (the default).
coring::task<int> main_task(std::string where, std::string log_path, bool stats) {
    // First of all: from here on SIGINT and SIGTERM are blocked, and wait (pending) for this awaitable.
    auto stop = coring::wait_signal(SIGINT, SIGTERM);

    access_log log;
    if (!log_path.empty()) co_await open_log(log, log_path);

    auto listener = coring::tcp_listener::bind(listen_address(where), listener_options(false));
    std::printf("listening on %s\n", listener.local_address().to_string().c_str());

    std::uint64_t accepted = 0;
    const served result =
        co_await serve_and_log(std::move(listener), std::move(stop), log_path.empty() ? nullptr : &log, &accepted);
    std::printf("stopped: %s\n", result.signal == SIGINT ? "SIGINT" : "SIGTERM");
    if (stats) print_stats({accepted});
    co_return result.logged ? 0 : 1;
}

// ---- --threads N: N loops, one listener each ------------------------------------------------------------------------

// What loop i owns. Built before the loops start; after that only loop i touches it, until run() has returned.
struct loop_share {
    coring::tcp_listener listener;
    coring::event stop; // set by loop 0 (through run_on) when a signal comes
    int signal = 0;
    std::uint64_t accepted = 0;
    bool logged = true;
};

// Everything the loops of --threads share, in run_threads' frame, which outlives the runtime's run().
struct cluster {
    coring::runtime* rt = nullptr;
    std::unique_ptr<loop_share[]> loops;
    std::string log_path;
};

// Runs on loop i's thread (through run_on): the stop order from loop 0.
void order_stop(loop_share* share, int sig) {
    share->signal = sig;
    share->stop.set();
}

// A loop's stop awaitable with --threads: the signal loop 0 passed on.
coring::task<int> stop_ordered(loop_share* share) {
    co_await share->stop.wait();
    co_return share->signal;
}

// Loop 0's: waits for SIGINT or SIGTERM (blocked in every thread since before the loops started, so it waits, pending,
// for this signalfd) and passes it to every loop, itself included.
coring::task<> relay_signal(cluster* c) {
    auto signals = coring::wait_signal(SIGINT, SIGTERM);
    const int sig = co_await signals;
    for (std::size_t i = 0; i < c->rt->size(); ++i)
        co_await coring::run_on(c->rt->loop(i), &order_stop, &c->loops[i], sig);
}

coring::task<> loop_main(cluster* c, std::size_t i) {
    loop_share& share = c->loops[i];
    std::optional<coring::join_handle<void>> relay;
    if (i == 0) relay = coring::spawn(relay_signal(c));
    access_log log;
    if (!c->log_path.empty()) co_await open_log(log, c->log_path);
    const served result = co_await serve_and_log(std::move(share.listener), stop_ordered(&share),
                                                 c->log_path.empty() ? nullptr : &log, &share.accepted);
    share.logged = result.logged;
    if (relay) co_await *relay; // the other loops may not have had their order yet
}

int run_threads(const std::string& where, std::size_t threads, const std::string& log_path, bool stats) {
    // Blocked before the loop threads exist, so that they inherit the mask: a signal then waits, pending, for loop 0's
    // signalfd instead of killing the process from whichever thread the kernel picked. (The runtime's own
    // stop_signals would cancel every loop at once; here each loop stops as the single-loop server does.)
    sigset_t signals;
    ::sigemptyset(&signals);
    ::sigaddset(&signals, SIGINT);
    ::sigaddset(&signals, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    cluster c;
    c.log_path = log_path;
    c.loops.reset(new loop_share[threads]);
    // Loop 0's listener first, so that port 0 is resolved; the others join its address.
    c.loops[0].listener = coring::tcp_listener::bind(listen_address(where), listener_options(true));
    const coring::address at = c.loops[0].listener.local_address();
    for (std::size_t i = 1; i < threads; ++i)
        c.loops[i].listener = coring::tcp_listener::bind(at, listener_options(true));
    std::printf("listening on %s\n", at.to_string().c_str());

    coring::runtime_options options;
    options.stop_signals = {};
    coring::runtime rt(threads, options);
    c.rt = &rt;
    rt.run([&c](std::size_t i) { return loop_main(&c, i); });

    std::printf("stopped: %s\n", c.loops[0].signal == SIGINT ? "SIGINT" : "SIGTERM");
    if (stats) {
        std::vector<std::uint64_t> accepted;
        for (std::size_t i = 0; i < threads; ++i) accepted.push_back(c.loops[i].accepted);
        print_stats(accepted);
    }
    for (std::size_t i = 0; i < threads; ++i)
        if (!c.loops[i].logged) return 1;
    return 0;
}

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // line-buffered even into a pipe: scripts read the address at once
    std::optional<std::string> where;
    std::string log_path;
    std::size_t threads = 1;
    bool stats = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--log" && i + 1 < argc && argv[i + 1][0] != '\0') {
            log_path = argv[++i];
        } else if (arg == "--threads" && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
            threads = static_cast<std::size_t>(std::atoi(argv[++i]));
        } else if (arg == "--stats") {
            stats = true;
        } else if (!where && !arg.starts_with("--")) {
            where = arg;
        } else {
            std::fputs("usage: echo_server [address] [--log PATH] [--threads N] [--stats]\n", stderr);
            return 2;
        }
    }
    try {
        if (threads > 1) return run_threads(where.value_or("127.0.0.1:8080"), threads, log_path, stats);
        return coring::run(main_task(where.value_or("127.0.0.1:8080"), log_path, stats));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_server: %s\n", e.what());
        return 1;
    }
}
