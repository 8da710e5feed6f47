// Ten thousand loopback TCP connections open at once, each echoed twice, client and server in separate processes.

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

namespace test_many_connections {

using namespace std::chrono_literals;
using coring::address;
using coring::task;

namespace {

constexpr int connections = 10000;
// Descriptors a process needs beyond one per connection: stdio, the ring, the listener, the test runner's own.
constexpr rlim_t spare_fds = 256;

// ---- the server (forked child) ----------------------------------------------------------------------------------

/// What the server saw, sent to the parent when it stops.
struct server_report {
    std::int64_t accepted = 0;
    std::int64_t peak = 0;     // connections open at the same time, at most
    std::int64_t bytes = 0;    // echoed
    std::int64_t failures = 0; // connections that ended with an error
};

struct server_state {
    server_report report;
    std::int64_t open = 0;
};

task<> echo(coring::tcp_stream s, server_state& st) {
    ++st.report.accepted;
    st.report.peak = std::max(st.report.peak, ++st.open);
    char buf[1024];
    try {
        for (;;) {
            const std::size_t n = co_await s.read(std::span(buf));
            if (n == 0) break;
            co_await s.write_all(std::string_view(buf, n));
            st.report.bytes += static_cast<std::int64_t>(n);
        }
    } catch (const std::system_error&) {
        ++st.report.failures;
    }
    --st.open;
    co_await s.close();
}

task<> serve(coring::tcp_listener& l, server_state& st) {
    coring::task_group conns;
    try {
        for (;;) {
            coring::tcp_stream s = co_await l.accept();
            s.set_nodelay(true);
            conns.spawn(echo(std::move(s), st));
        }
    } catch (const coring::cancelled_error&) {
        // Stopping: the join below ends the connections (no co_await inside a catch block).
    }
    co_await conns.join();
}

task<int> server_main(int report_fd) {
    auto stop = coring::wait_signal(SIGTERM); // blocked before the parent learns the port and may send it
    coring::listen_options options;
    options.backlog = 4096;
    auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"), options);
    const std::uint16_t port = l.local_address().port();
    if (!coring_test::write_full(report_fd, &port, sizeof port)) co_return 2;
    server_state st;
    auto first = co_await coring::when_any(serve(l, st), stop);
    if (first.index() != 1) co_return 3;
    co_return coring_test::write_full(report_fd, &st.report, sizeof st.report) ? 0 : 4;
}

int server_process(int report_fd) {
    const coring_test::raised_fd_limit limit;
    if (limit.limit() < connections + spare_fds) return 5;
    return coring::run(server_main(report_fd));
}

// ---- the clients (this process) ---------------------------------------------------------------------------------

struct client_state {
    coring::event all_connected;
    // Bounds the connections in their handshake at once: 10,000 SYNs in one burst overflow the accept queue
    // (somaxconn), and the kernel then drops handshakes and retries them after a second.
    coring::semaphore connecting{256};
    int echoed_once = 0;
    int finished = 0;
    int fds_when_all_open = 0;
    int mismatches = 0;
    std::string first_mismatch;

    void compare(const std::string& got, const std::string& sent) {
        if (got == sent) return;
        if (mismatches++ == 0) first_mismatch = "sent \"" + sent + "\", got back \"" + got + "\"";
    }
};

task<> client(address at, int id, client_state& st) {
    co_await st.connecting.acquire();
    coring::tcp_stream c = co_await coring::tcp_stream::connect(at);
    c.set_nodelay(true);
    const std::string first = "connection " + std::to_string(id) + " says hello\n";
    co_await c.write_all(first);
    const std::string echo1 = co_await c.read_until('\n');
    st.connecting.release();
    st.compare(echo1, first);
    if (++st.echoed_once == connections) {
        st.fds_when_all_open = coring_test::open_fds();
        st.all_connected.set();
    }
    // Every connection stays open until all of them are: 10,000 held at the same time.
    co_await st.all_connected.wait();
    // Lines of different lengths (up to about 1 KiB), so that echoes differ in more than their number.
    const std::string second = "connection " + std::to_string(id) + " again " +
                               std::string(static_cast<std::size_t>(id % 1000), static_cast<char>('a' + id % 26)) +
                               "\n";
    co_await c.write_all(second);
    const std::string echo2 = co_await c.read_until('\n');
    st.compare(echo2, second);
    co_await c.shutdown();
    const std::string end = co_await c.read_until('\n');
    st.compare(end, "");
    co_await c.close();
    ++st.finished;
}

task<> all_clients(address at, client_state& st) {
    std::vector<task<>> clients;
    clients.reserve(connections);
    for (int i = 0; i < connections; ++i) clients.push_back(client(at, i, st));
    co_await coring::timeout(40s, coring::gather(std::move(clients)));
}

} // namespace

TEST_CASE("many connections - 10000 concurrent loopback TCP connections, all open at once, each echoed twice",
          "[net][many]") {
    rlimit lim{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
    if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < connections + spare_fds) {
        WARN("the hard RLIMIT_NOFILE is " << lim.rlim_max << ", below the " << connections + spare_fds
                                          << " descriptors each process needs: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    {
        coring_test::forked_child server(&server_process);
        std::uint16_t port = 0;
        REQUIRE(server.report(&port, sizeof port, 5000ms));

        client_state st;
        {
            const coring_test::raised_fd_limit limit;
            REQUIRE(limit.limit() >= connections + spare_fds);
            coring::run(all_clients(address::parse("127.0.0.1:0").with_port(port), st));
        }
        INFO(st.first_mismatch);
        CHECK(st.mismatches == 0);
        CHECK(st.echoed_once == connections);
        CHECK(st.finished == connections);
        CHECK(st.fds_when_all_open >= fds + connections);

        bool timed_out = false;
        const int status = server.stop(SIGTERM, 10000ms, &timed_out);
        INFO("server: " << coring_test::describe_status(status));
        CHECK_FALSE(timed_out);
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
        server_report r;
        REQUIRE(server.report(&r, sizeof r, 5000ms));
        CHECK(r.accepted == connections);
        CHECK(r.peak == connections);
        CHECK(r.failures == 0);
        std::int64_t expected_bytes = 0;
        for (int i = 0; i < connections; ++i)
            expected_bytes += static_cast<std::int64_t>(("connection " + std::to_string(i) + " says hello\n").size() +
                                                        ("connection " + std::to_string(i) + " again ").size() +
                                                        static_cast<std::size_t>(i % 1000) + 1);
        CHECK(r.bytes == expected_bytes);
    }
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_many_connections
