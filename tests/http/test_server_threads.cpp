// http::server on several loops (one SO_REUSEPORT listener each), shut down gracefully under a stream of new
// connections.

#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace test_server_threads {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// Connects, sends one request, reads until the server closes (the request says Connection: close), over and over
/// until `stop`: a new connection every few tens of microseconds, as a client that does not keep connections alive.
void hammer(std::uint16_t port, const std::atomic<bool>* stop, std::atomic<int>* answered) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const std::string req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    while (!stop->load()) {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) break;
        timeval tv{0, 200'000}; // after the shutdown, a connection waits in a backlog nobody accepts from any more
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0 &&
            ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
            char buf[512];
            bool got = false;
            while (::recv(fd, buf, sizeof buf, 0) > 0) got = true;
            if (got) answered->fetch_add(1);
        }
        ::close(fd);
    }
}

task<> shut_down(coring::http::server* app) {
    app->shutdown();
    co_return;
}

} // namespace

TEST_CASE("http server threads - a graceful shutdown on two loops under a stream of new connections ends promptly",
          "[http][server][reuse_port]") {
    const int fds = coring_test::open_fds();
    // Rounds: the race this guards against (a connection accepted as the acceptor is being cancelled, its task not
    // started when the idle connections are cancelled) needs an accept and the shutdown in the same turn.
    for (int round = 0; round < 5; ++round) {
        std::vector<coring::tcp_listener> listeners;
        listeners.push_back(
            coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"), {.backlog = 4096, .reuse_port = true}));
        const coring::address at = listeners[0].local_address();
        listeners.push_back(coring::tcp_listener::bind(at, {.backlog = 4096, .reuse_port = true}));
        std::array<std::unique_ptr<coring::http::server>, 2> apps;
        for (auto& app : apps) {
            app = std::make_unique<coring::http::server>();
            app->get("/", [](coring::http::request&) -> task<coring::http::response> {
                co_return coring::http::response::text("hello\n");
            });
        }
        std::atomic<bool> stop_clients{false}, finished{false}, watchdog_fired{false};
        std::atomic<int> answered{0};
        coring::runtime rt(2);
        std::vector<std::thread> clients;
        for (int t = 0; t < 3; ++t) clients.emplace_back(hammer, at.port(), &stop_clients, &answered);
        coring_test::stopwatch since_shutdown;
        std::thread controller([&] {
            for (int i = 0; i < 5000 && answered.load() < 200; ++i) std::this_thread::sleep_for(1ms);
            since_shutdown = coring_test::stopwatch{};
            for (std::size_t i = 0; i < 2; ++i) coring::spawn_on(rt.loop(i), shut_down(apps[i].get()));
            // A server whose shutdown never completes would keep run() waiting for ever: stop it after 8 s, and fail.
            for (int i = 0; i < 800 && !finished.load(); ++i) std::this_thread::sleep_for(10ms);
            if (!finished.load()) {
                watchdog_fired = true;
                rt.stop();
            }
        });
        rt.run([&](std::size_t i) -> task<> { co_await apps[i]->serve(listeners[i]); });
        finished = true;
        controller.join();
        const double took = since_shutdown.seconds(); // give or take the controller's last 10 ms nap
        stop_clients = true;
        for (std::thread& c : clients) c.join();
        INFO("round " << round << ": " << answered.load() << " answers, shutdown took " << took << " s; accepted "
                      << apps[0]->accepted() << " and " << apps[1]->accepted());
        CHECK_FALSE(watchdog_fired.load());
        CHECK(took < 5.0);
        CHECK(apps[0]->connections() == 0);
        CHECK(apps[1]->connections() == 0);
    }
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_server_threads
