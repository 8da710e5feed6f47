// SO_REUSEPORT servers over several loops: one listener per loop on the same port, the kernel spreading connections.

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace test_reuse_port {

using namespace std::chrono_literals;
using coring::address;
using coring::task;

namespace {

constexpr int connections = 10000;
constexpr int client_threads = 4;
// Connections a client thread holds open at once: 4 x 250 client sockets plus as many accepted ones, above the usual
// soft RLIMIT_NOFILE of 1024, so that the accept queues and the loops see bursts rather than one connection at a time.
constexpr int batch = 250;
constexpr rlim_t spare_fds = 256;

/// What one loop served. Written only by its loop, read by the test once run() has returned (the threads joined).
struct alignas(64) loop_record {
    std::vector<int> ids; // the connections it echoed to the end, by the number each client sent
    int failures = 0;     // connections that ended with an error
};

std::string message_of(int id) { return "connection " + std::to_string(id) + " says hello\n"; }

/// Echoes until the client's end of stream, then records which connection it was ("connection <id> ...").
task<> echo(coring::tcp_stream s, loop_record* rec) {
    std::string got;
    char buf[256];
    try {
        for (;;) {
            const std::size_t n = co_await s.read(std::span(buf));
            if (n == 0) break;
            got.append(buf, n);
            co_await s.write_all(std::string_view(buf, n));
        }
        // Recorded before the close: the client hears the end of stream only after this.
        rec->ids.push_back(std::stoi(got.substr(std::strlen("connection "))));
    } catch (const std::system_error&) {
        ++rec->failures;
    }
    co_await s.close();
}

task<> serve(coring::tcp_listener* l, loop_record* rec) {
    coring::task_group conns;
    try {
        for (;;) {
            coring::tcp_stream s = co_await l->accept();
            conns.spawn(echo(std::move(s), rec));
        }
    } catch (const coring::cancelled_error&) {
        // runtime::stop(): the join below cancels what is left (no co_await inside a catch block).
    }
    co_await conns.join();
}

/// One client thread: connections `first`, `first + step`, ... in batches, each sending its message, half-closing,
/// and reading the whole echo back, byte for byte. Blocking sockets with a receive timeout, so a lost echo fails the
/// test instead of hanging it. Returns a description of the first problem, or "".
std::string run_clients(std::uint16_t port, int first, int step, int* echoed) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::vector<int> ids;
    for (int id = first; id < connections; id += step) ids.push_back(id);
    for (std::size_t b = 0; b < ids.size(); b += batch) {
        const std::size_t end = std::min(ids.size(), b + batch);
        std::vector<int> fds;
        struct closer {
            std::vector<int>& fds;
            ~closer() {
                for (int fd : fds) ::close(fd);
            }
        } close_all{fds};
        for (std::size_t k = b; k < end; ++k) {
            const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0) return "socket: " + std::string(std::strerror(errno));
            fds.push_back(fd);
            timeval tv{10, 0};
            ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0)
                return "connect: " + std::string(std::strerror(errno));
        }
        for (std::size_t k = b; k < end; ++k) {
            const std::string m = message_of(ids[k]);
            if (::send(fds[k - b], m.data(), m.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(m.size()))
                return "send: " + std::string(std::strerror(errno));
            ::shutdown(fds[k - b], SHUT_WR);
        }
        for (std::size_t k = b; k < end; ++k) {
            std::string back;
            char buf[256];
            for (;;) {
                const ssize_t n = ::recv(fds[k - b], buf, sizeof buf, 0);
                if (n < 0) return "recv: " + std::string(std::strerror(errno));
                if (n == 0) break;
                back.append(buf, static_cast<std::size_t>(n));
            }
            if (back != message_of(ids[k])) return "sent \"" + message_of(ids[k]) + "\", got back \"" + back + "\"";
            ++*echoed;
        }
    }
    return "";
}

} // namespace

TEST_CASE("reuse_port - 10000 connections to two loops listening on one port are each served once by one loop",
          "[net][reuse_port]") {
    rlimit lim{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
    const rlim_t needed = 2 * client_threads * batch + spare_fds;
    if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < needed) {
        WARN("the hard RLIMIT_NOFILE is " << lim.rlim_max << ", below the " << needed
                                          << " descriptors needed: skipped");
        return;
    }
    const coring_test::raised_fd_limit limit;
    const int fds = coring_test::open_fds();
    std::array<loop_record, 2> records;
    std::array<int, client_threads> echoed{};
    std::array<std::string, client_threads> problems;
    {
        // Listener 0 picks the port; listener 1 joins it. Both exist before either loop runs, so the kernel spreads
        // connections over both from the first one.
        std::vector<coring::tcp_listener> listeners;
        listeners.push_back(
            coring::tcp_listener::bind(address::parse("127.0.0.1:0"), {.backlog = 4096, .reuse_port = true}));
        const address at = listeners[0].local_address();
        listeners.push_back(coring::tcp_listener::bind(at, {.backlog = 4096, .reuse_port = true}));
        REQUIRE(listeners[1].local_address().port() == at.port());

        coring::runtime rt(2);
        coring_test::stderr_capture err;
        std::vector<std::thread> clients;
        std::thread driver([&] {
            for (int t = 0; t < client_threads; ++t)
                clients.emplace_back([&, t] { problems[t] = run_clients(at.port(), t, client_threads, &echoed[t]); });
            for (std::thread& c : clients) c.join();
            rt.stop();
        });
        coring_test::stopwatch sw;
        rt.run([&](std::size_t i) { return serve(&listeners[i], &records[i]); });
        driver.join();
        err.restore();
        INFO("served in " << sw.seconds() << " s");
        CHECK_FALSE(coring_test::contains(err.text(), "did not finish"));
        CHECK_FALSE(coring_test::contains(err.text(), "leaked"));
    }
    for (int t = 0; t < client_threads; ++t) {
        INFO("client thread " << t << ": " << problems[t]);
        CHECK(problems[t].empty());
        CHECK(echoed[t] == connections / client_threads);
    }
    std::vector<int> times_served(connections, 0);
    for (const loop_record& r : records) {
        CHECK(r.failures == 0);
        for (int id : r.ids) {
            REQUIRE(id >= 0);
            REQUIRE(id < connections);
            ++times_served[static_cast<std::size_t>(id)];
        }
    }
    CHECK(std::count(times_served.begin(), times_served.end(), 1) == connections);

    const std::size_t busiest = std::max(records[0].ids.size(), records[1].ids.size());
    const std::size_t least = std::min(records[0].ids.size(), records[1].ids.size());
    REQUIRE(least > 0);
    const double spread = static_cast<double>(busiest) / static_cast<double>(least);
    INFO("loop 0 served " << records[0].ids.size() << ", loop 1 served " << records[1].ids.size() << ": spread "
                          << spread);
    CHECK(spread <= 1.3);
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_reuse_port
