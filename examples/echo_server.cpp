// A TCP echo server: every connection gets a task of its own that sends back whatever it receives.
//
//   echo_server [address] [--log PATH]
//                                address: 127.0.0.1:8080 (the default), [::1]:9000, or a bare port (8080);
//                                port 0 picks a free port. The first line printed is the address it listens on.
//                                --log PATH appends a line to PATH for every connection opened and closed:
//                                  2025-01-31T12:00:00.123Z 127.0.0.1:51234 open
//                                  2025-01-31T12:00:01.456Z 127.0.0.1:51234 close, 5 bytes echoed
//
// Ctrl-C or SIGTERM stops it gracefully: it stops accepting, cancels the open connections, waits for them to end,
// writes what is left of the log to the file and syncs it, prints "stopped: SIGINT" (or SIGTERM) and exits 0 (1 if
// the log could not be written: the echoes went on regardless).
//
// The log is written through coring too, without ever holding up an echo: a connection only queues its line
// (try_push never waits) and one logger task writes whatever lines have piled up with a single write, so a slow disk
// makes the batches bigger, not the echoes slower.
#include <coring/coring.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <exception>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

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
coring::task<> serve(coring::tcp_listener listener, access_log* log) {
    coring::task_group connections;
    try {
        for (;;) {
            coring::tcp_stream conn = co_await listener.accept();
            conn.set_nodelay(true); // answer small requests at once (no Nagle delay)
            connections.spawn(echo(std::move(conn), log));
        }
    } catch (const coring::cancelled_error&) {
        // Stop accepting; the join below cancels the connections (co_await is not allowed inside a catch block).
    }
    co_await connections.join();
}

// Serves until a signal arrives and returns it; when_any then cancels the server and waits until it has wound down,
// so that every connection has queued its "close" line before the logger is told that no more lines will come.
coring::task<int> serve_until_stopped(coring::tcp_listener listener, coring::signal_awaitable stop, access_log* log) {
    auto server = serve(std::move(listener), log);
    auto first = co_await coring::when_any(std::move(server), stop);
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

coring::task<int> main_task(std::string where, std::string log_path) {
    // First of all: from here on SIGINT and SIGTERM are blocked, and wait (pending) for this awaitable.
    auto stop = coring::wait_signal(SIGINT, SIGTERM);

    access_log log;
    if (!log_path.empty()) {
        try {
            log.file = co_await coring::file::open(log_path, coring::open_mode::write | coring::open_mode::create |
                                                                 coring::open_mode::append);
        } catch (const std::system_error& e) {
            throw std::runtime_error("cannot open the log " + log_path + ": " + e.code().message());
        }
    }

    coring::listen_options options;
    options.backlog = 4096; // room for a burst of connections (capped by net.core.somaxconn)
    auto listener = coring::tcp_listener::bind(listen_address(where), options);
    std::printf("listening on %s\n", listener.local_address().to_string().c_str());

    int stopped_by = 0;
    bool logged = true;
    if (log_path.empty()) {
        stopped_by = co_await serve_until_stopped(std::move(listener), std::move(stop), nullptr);
    } else {
        // The logger runs beside the server; gather returns once both are done: the server stopped, the log synced.
        auto [sig, ok] =
            co_await coring::gather(serve_until_stopped(std::move(listener), std::move(stop), &log), write_log(&log));
        stopped_by = sig;
        logged = ok;
    }
    std::printf("stopped: %s\n", stopped_by == SIGINT ? "SIGINT" : "SIGTERM");
    co_return logged ? 0 : 1;
}

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // line-buffered even into a pipe: scripts read the address at once
    std::optional<std::string> where;
    std::string log_path;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--log" && i + 1 < argc && argv[i + 1][0] != '\0') {
            log_path = argv[++i];
        } else if (!where && !arg.starts_with("--")) {
            where = arg;
        } else {
            std::fputs("usage: echo_server [address] [--log PATH]\n", stderr);
            return 2;
        }
    }
    try {
        return coring::run(main_task(where.value_or("127.0.0.1:8080"), log_path));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_server: %s\n", e.what());
        return 1;
    }
}
