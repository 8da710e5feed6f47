#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace test_unix {

using namespace std::chrono_literals;
using coring::address;
using coring::task;

namespace {

bool is_socket_file(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

/// Removes the file at `path` when the scope ends.
struct remove_at_exit {
    std::string path;
    ~remove_at_exit() { ::unlink(path.c_str()); }
};

task<> round_trip(coring::unix_listener& l, coring::unix_stream c) {
    auto s = co_await l.accept();
    co_await c.write_all("ping\n");
    const std::string line = co_await s.read_until('\n');
    CHECK(line == "ping\n");
    co_await s.write_all("pong\n");
    const std::string back = co_await c.read_until('\n');
    CHECK(back == "pong\n");
    // A connecting Unix socket has no name: the server sees the unnamed address.
    CHECK(s.peer_address().is_unix());
    CHECK(s.peer_address().to_string() == "unix:");
    CHECK(c.peer_address() == l.local_address());
    co_await c.close();
    const std::string end = co_await s.read_until('\n');
    CHECK(end.empty());
}

std::string bind_error(const std::string& path) {
    try {
        (void)coring::unix_listener::bind(path);
    } catch (const std::system_error& e) {
        return std::to_string(e.code().value()) + " " + e.what();
    }
    return "";
}

} // namespace

TEST_CASE("unix - a listener at a path: local_address, path, connect by path and by address", "[net][unix]") {
    const int fds = coring_test::open_fds();
    const std::string path = coring_test::unique_socket_name(false);
    remove_at_exit cleanup{path};
    coring::run([](std::string p) -> task<> {
        auto l = coring::unix_listener::bind(p);
        CHECK(l.path() == p);
        CHECK(l.local_address().is_unix());
        CHECK(l.local_address().to_string() == "unix:" + p);
        CHECK(l.local_address().port() == 0);
        CHECK(is_socket_file(p));

        auto by_path = co_await coring::unix_stream::connect(p);
        co_await round_trip(l, std::move(by_path));
        auto by_address = co_await coring::unix_stream::connect(l.local_address());
        co_await round_trip(l, std::move(by_address));
    }(path));
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("unix - an abstract listener (@name) makes no file and works the same", "[net][unix]") {
    const int fds = coring_test::open_fds();
    const std::string name = coring_test::unique_socket_name(true);
    coring::run([](std::string n) -> task<> {
        auto l = coring::unix_listener::bind(n);
        CHECK(l.path() == n);
        CHECK(l.local_address().to_string() == "unix:" + n);
        CHECK(::access(n.substr(1).c_str(), F_OK) != 0);
        CHECK(::access(("/tmp/" + n.substr(1)).c_str(), F_OK) != 0);

        auto c = co_await coring::unix_stream::connect(n);
        co_await round_trip(l, std::move(c));

        // The name is taken while the listener lives; a second listener is refused.
        const std::string err = bind_error(n);
        INFO(err);
        CHECK(err.find(std::to_string(EADDRINUSE) + " ") == 0);
        CHECK(err.find("bind unix:" + n) != std::string::npos);
    }(name));
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("unix - a stale socket file left by an earlier run is replaced", "[net][unix]") {
    const int fds = coring_test::open_fds();
    const std::string path = coring_test::unique_socket_name(false);
    remove_at_exit cleanup{path};
    {
        // A socket bound at `path` and closed: the file stays, nobody listens behind it.
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        const address a = address::parse("unix:" + path);
        REQUIRE(::bind(fd, a.data(), a.size()) == 0);
        ::close(fd);
    }
    REQUIRE(is_socket_file(path));
    coring::run([](std::string p) -> task<> {
        // Before: nothing listens there.
        bool refused = false;
        try {
            (void)co_await coring::unix_stream::connect(p);
        } catch (const std::system_error& e) {
            refused = e.code().value() == ECONNREFUSED;
        }
        CHECK(refused);

        auto l = coring::unix_listener::bind(p);
        auto c = co_await coring::unix_stream::connect(p);
        co_await round_trip(l, std::move(c));
    }(path));
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("unix - a regular file at the path is not removed: EADDRINUSE", "[net][unix]") {
    const int fds = coring_test::open_fds();
    const std::string path = coring_test::unique_socket_name(false);
    remove_at_exit cleanup{path};
    {
        std::ofstream f(path);
        f << "precious data\n";
    }
    const std::string err = bind_error(path);
    INFO(err);
    CHECK(err.find(std::to_string(EADDRINUSE) + " ") == 0);
    CHECK(err.find("bind unix:" + path) != std::string::npos);
    {
        std::ifstream f(path);
        std::stringstream content;
        content << f.rdbuf();
        CHECK(content.str() == "precious data\n");
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("unix - errors name the path: missing socket, missing directory, bad arguments", "[net][unix]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        const std::string missing = coring_test::unique_socket_name(false);
        std::string what;
        int code = 0;
        try {
            (void)co_await coring::unix_stream::connect(missing);
        } catch (const std::system_error& e) {
            what = e.what();
            code = e.code().value();
        }
        INFO(what);
        CHECK(code == ENOENT);
        CHECK(what.find("connect unix:" + missing) != std::string::npos);

        const std::string nodir = "/nonexistent-coring-dir/x.sock";
        const std::string err = bind_error(nodir);
        CHECK(err.find(std::to_string(ENOENT) + " ") == 0);
        CHECK(err.find("bind unix:" + nodir) != std::string::npos);

        CHECK_THROWS_AS(coring::unix_stream::connect(address::parse("127.0.0.1:80")), std::invalid_argument);
        CHECK_THROWS_AS(coring::unix_listener::bind(""), std::invalid_argument);
        CHECK_THROWS_AS(coring::unix_stream::connect(std::string(200, 'x')), std::invalid_argument);
    }());
    CHECK(coring_test::open_fds() == fds);
}

namespace {

// The four ways callers name a path (issue 10): each must reach every call that takes one.
using coring_test::as_c_str;
using coring_test::as_fs_path;
using coring_test::as_string;
using coring_test::as_string_view;

} // namespace

TEMPLATE_TEST_CASE("unix - bind and connect take a std::filesystem::path, std::string, std::string_view or const char*",
                   "[net][unix][path]", as_fs_path, as_string, as_string_view, as_c_str) {
    const int fds = coring_test::open_fds();
    for (const bool abstract : {false, true}) {
        coring::run([](bool abstract_name) -> task<> {
            const std::string name = coring_test::unique_socket_name(abstract_name);
            remove_at_exit cleanup{abstract_name ? std::string() : name};
            auto l = coring::unix_listener::bind(TestType{}(name));
            CHECK(l.path() == name);
            CHECK(l.local_address() == address::from_path(TestType{}(name)));
            CHECK(l.local_address() == address::parse("unix:" + name));
            // The awaitable keeps the address: the caller's string is gone before the connect runs.
            auto connecting = coring::unix_stream::connect(TestType{}(std::string(name)));
            auto c = co_await std::move(connecting);
            co_await round_trip(l, std::move(c));
        }(abstract));
    }
    CHECK(coring_test::open_fds() == fds);
}

namespace {

/// Connects to `p` and keeps the stream in `out` (so that the backlog stays full), counting the connection.
task<> connect_into(std::string p, std::vector<coring::unix_stream>& out, int& connected) {
    out.push_back(co_await coring::unix_stream::connect(p));
    ++connected;
}

} // namespace

TEST_CASE("unix - a connect to a listener whose backlog is full waits for an accept, and can be cancelled meanwhile",
          "[net][unix]") {
    // A blocking connect(2) sleeps until an accept makes room; io_uring's connect waits the same way, and so must the
    // epoll backend's, although a non-blocking connect says EAGAIN there and no readiness announces the room.
    const int fds = coring_test::open_fds();
    const std::string path = coring_test::unique_socket_name(false);
    remove_at_exit cleanup{path};
    coring::run([](std::string p) -> task<> {
        coring::listen_options o;
        o.backlog = 1;
        auto l = coring::unix_listener::bind(p, o);
        std::vector<coring::unix_stream> clients;
        clients.reserve(64);
        // Fill the backlog (Linux queues backlog + 1 connections): connects that finish at once, until one waits.
        int queued = 0;
        bool waited = false;
        for (int i = 0; i < 16 && !waited; ++i) {
            int connected = 0;
            try {
                co_await coring::timeout(200ms, connect_into(p, clients, connected));
                ++queued;
            } catch (const coring::timeout_error&) {
                waited = true; // cancelled while it waited: it ended, connected nowhere
            }
            CHECK(connected == (waited ? 0 : 1));
        }
        REQUIRE(waited);
        CHECK(queued >= 1);
        CHECK(queued <= 8);

        // One more waits until an accept takes a queued connection, then gets through.
        int connected = 0;
        auto late = coring::spawn(connect_into(p, clients, connected));
        co_await coring::sleep(100ms);
        CHECK(connected == 0);
        auto first = co_await l.accept();
        co_await coring::timeout(5s, std::move(late));
        CHECK(connected == 1);
        CHECK(static_cast<int>(clients.size()) == queued + 1);

        // Every queued connection is really there: the accepts find them all.
        for (int i = 0; i < queued; ++i) {
            auto s = co_await coring::timeout(5s, l.accept());
            (void)s;
        }
    }(path));
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_unix
