// A TCP echo server: every connection gets a task of its own that sends back whatever it receives.
//
//   echo_server [address]        address: 127.0.0.1:8080 (the default), [::1]:9000, or a bare port (8080);
//                                port 0 picks a free port. The first line printed is the address it listens on.
//
// Ctrl-C or SIGTERM stops it gracefully: it stops accepting, cancels the open connections, waits for them to end,
// prints "stopped: SIGINT" (or SIGTERM) and exits 0.
#include <coring/coring.hpp>

#include <array>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <span>
#include <string>
#include <system_error>

// "8080" means 127.0.0.1:8080; anything else is parsed as an address ("0.0.0.0:80", "[::]:8080").
coring::address listen_address(const std::string& arg) {
    if (arg.find(':') == std::string::npos) return coring::address::parse("127.0.0.1:" + arg);
    return coring::address::parse(arg);
}

// One client: read what arrived, write it back, until the client closes the connection (read returns 0).
coring::task<> echo(coring::tcp_stream conn) {
    std::array<std::byte, 16 * 1024> buf; // lives in the coroutine frame
    try {
        for (;;) {
            const std::size_t n = co_await conn.read(buf);
            if (n == 0) break;
            co_await conn.write_all(std::span(buf).first(n));
        }
    } catch (const std::system_error& e) {
        // A reset or broken connection ends this client only ("recv from 127.0.0.1:51234: Connection reset...").
        std::fprintf(stderr, "%s\n", e.what());
    }
}

// Accepts connections until cancelled, one echo task each. The connections live in a task_group: when the server is
// cancelled, joining the group cancels the connections still open and waits until they have finished.
coring::task<> serve(coring::tcp_listener listener) {
    coring::task_group connections;
    try {
        for (;;) {
            coring::tcp_stream conn = co_await listener.accept();
            conn.set_nodelay(true); // answer small requests at once (no Nagle delay)
            connections.spawn(echo(std::move(conn)));
        }
    } catch (const coring::cancelled_error&) {
        // Stop accepting; the join below cancels the connections (co_await is not allowed inside a catch block).
    }
    co_await connections.join();
}

coring::task<> main_task(std::string where) {
    // First of all: from here on SIGINT and SIGTERM are blocked, and wait (pending) for this awaitable.
    auto stop = coring::wait_signal(SIGINT, SIGTERM);

    coring::listen_options options;
    options.backlog = 4096; // room for a burst of connections (capped by net.core.somaxconn)
    auto listener = coring::tcp_listener::bind(listen_address(where), options);
    std::printf("listening on %s\n", listener.local_address().to_string().c_str());

    // Serve until a signal arrives; when_any then cancels the server and waits until it has wound down.
    auto server = serve(std::move(listener));
    auto first = co_await coring::when_any(std::move(server), stop);
    std::printf("stopped: %s\n", std::get<1>(first) == SIGINT ? "SIGINT" : "SIGTERM");
}

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // line-buffered even into a pipe: scripts read the address at once
    try {
        coring::run(main_task(argc > 1 ? argv[1] : "127.0.0.1:8080"));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_server: %s\n", e.what());
        return 1;
    }
}
