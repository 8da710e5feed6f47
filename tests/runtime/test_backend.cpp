// The choice of backend (io_uring or epoll) and what only the epoll backend does: performing operations inside the
// co_await, parking them on descriptors, its fairness budget, and descriptors closed behind its back. The rest of
// the suite runs again on epoll (CTest's "epoll: " tests), which is where the semantics are checked.

#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace test_backend {

using namespace std::chrono_literals;

namespace {

coring::loop_options on_epoll() {
    coring::loop_options o;
    o.backend = coring::backend::epoll;
    return o;
}

/// Sets an environment variable for the scope of the test (each CTest test is its own process).
struct scoped_env {
    std::string name;
    std::string saved;
    bool had = false;
    scoped_env(const char* n, const char* value) : name(n) {
        if (const char* v = std::getenv(n)) {
            had = true;
            saved = v;
        }
        if (value) ::setenv(n, value, 1);
        else ::unsetenv(n);
    }
    ~scoped_env() {
        if (had) ::setenv(name.c_str(), saved.c_str(), 1);
        else ::unsetenv(name.c_str());
    }
};

/// A connected pair of Unix stream sockets, adopted by coring.
std::pair<coring::unix_stream, coring::unix_stream> raw_pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    return {coring::unix_stream(fds[0]), coring::unix_stream(fds[1])};
}

} // namespace

TEST_CASE("backend - loop_options::backend chooses epoll, and the loop says which runs", "[backend]") {
    coring::event_loop loop(on_epoll());
    CHECK(loop.backend() == coring::backend::epoll);
    CHECK(std::string(coring::to_string(loop.backend())) == "epoll");
    // Sockets are performed by the loop itself; file operations go to the worker pool, as on an old kernel.
    CHECK(loop.supports(IORING_OP_RECV));
    CHECK(loop.supports(IORING_OP_ACCEPT));
    CHECK_FALSE(loop.supports(IORING_OP_READ));
    CHECK_FALSE(loop.supports(IORING_OP_OPENAT));
    CHECK(loop.features() == 0);
    CHECK(loop.setup_flags() == 0);
    CHECK(loop.receive_buffers() == nullptr);
}

TEST_CASE("backend - CORING_BACKEND overrides automatic, an explicit option overrides CORING_BACKEND", "[backend]") {
    {
        scoped_env env("CORING_BACKEND", "epoll");
        coring::event_loop loop;
        CHECK(loop.backend() == coring::backend::epoll);
    }
    {
        scoped_env env("CORING_BACKEND", "epoll");
        coring::loop_options o;
        o.backend = coring::backend::io_uring;
        // Where io_uring is refused (the seccomp launcher) an explicit io_uring is an error, not a fallback.
        try {
            coring::event_loop loop(o);
            CHECK(loop.backend() == coring::backend::io_uring);
        } catch (const std::system_error& e) {
            CHECK_THAT(e.what(), Catch::StartsWith("coring: cannot create an event loop: "));
        }
    }
    {
        scoped_env env("CORING_BACKEND", "kqueue");
        CHECK_THROWS_WITH(coring::event_loop(), Catch::Contains("CORING_BACKEND=kqueue is not a backend"));
    }
}

TEST_CASE("backend - a ring without an opcode coring needs: automatic runs on epoll, io_uring throws naming it",
          "[backend]") {
    scoped_env env("CORING_BACKEND", nullptr);
    coring::loop_options o;
    o.unsupported_opcodes = {IORING_OP_RECV}; // as on Linux 5.5
    {
        coring::event_loop loop(o);
        CHECK(loop.backend() == coring::backend::epoll);
        // The user's list applies on epoll too.
        CHECK_FALSE(loop.supports(IORING_OP_RECV));
    }
    o.backend = coring::backend::io_uring;
    try {
        coring::event_loop loop(o);
        FAIL("a loop was made without IORING_OP_RECV");
    } catch (const std::system_error& e) {
        // On a machine where io_uring is refused altogether, that is the reason given instead.
        const std::string what = e.what();
        CHECK_THAT(what, Catch::StartsWith("coring: cannot create an event loop: "));
        if (e.code().value() == EOPNOTSUPP) CHECK_THAT(what, Catch::Contains("IORING_OP_RECV (Linux 5.6)"));
    }
}

TEST_CASE("backend - submit() on epoll throws std::system_error naming the backend", "[backend]") {
    coring::event_loop loop(on_epoll());
    auto body = []() -> coring::task<std::string> {
        try {
            (void)co_await coring::submit([](io_uring_sqe* sqe) { io_uring_prep_nop(sqe); });
        } catch (const std::system_error& e) {
            co_return std::string(e.what()) + "|" + std::to_string(e.code().value());
        }
        co_return "no exception";
    };
    const std::string r = loop.run(body());
    CHECK_THAT(r, Catch::Contains("needs the io_uring backend") && Catch::Contains("epoll"));
    CHECK_THAT(r, Catch::EndsWith("|" + std::to_string(ENOTSUP)));
}

TEST_CASE("epoll - an exchange costs one wait per round trip, and ready operations finish inside the co_await",
          "[backend][epoll]") {
    coring::event_loop loop(on_epoll());
    auto body = [&]() -> coring::task<> {
        auto [a, b] = raw_pair();
        char buf[16];
        // Writable at once: no wait and no turn of the loop (within the task's budget of 32 per resume).
        const auto turns = loop.stats().turns;
        const auto enters = loop.stats().enters;
        for (int i = 0; i < 20; ++i) co_await a.write_all("x");
        CHECK(loop.stats().turns == turns);
        CHECK(loop.stats().enters == enters);
        std::size_t got = 0;
        while (got < 20) got += co_await b.read(std::as_writable_bytes(std::span(buf)));
        CHECK(got == 20);
        // Ping-pong with a second task: per round trip, the waits of both ends and nothing more.
        auto pong = [](coring::unix_stream& s) -> coring::task<> {
            char c[1];
            for (int i = 0; i < 200; ++i) {
                (void)co_await s.read_exact(std::as_writable_bytes(std::span(c)));
                co_await s.write_all("p");
            }
        };
        auto h = coring::spawn(pong(b));
        const auto before = loop.stats().enters;
        for (int i = 0; i < 200; ++i) {
            co_await a.write_all("q");
            (void)co_await a.read_exact(std::as_writable_bytes(std::span(buf, 1)));
        }
        co_await h;
        CHECK(loop.stats().enters - before <= 2 * 200 + 4);
    };
    loop.run(body());
}

TEST_CASE("epoll - a task whose socket is always readable still lets other tasks run", "[backend][epoll]") {
    coring::event_loop loop(on_epoll());
    auto body = []() -> coring::task<> {
        auto [a, b] = raw_pair();
        // Far more small reads' worth of bytes than one task may complete without yielding.
        const std::string lots(64 * 1024, 'z');
        co_await a.write_all(lots);
        int ticks = 0;
        bool reader_done = false;
        auto ticker = [](int& t, bool& done) -> coring::task<> {
            while (!done) {
                ++t;
                co_await coring::sleep(0ms);
            }
        };
        auto h = coring::spawn(ticker(ticks, reader_done));
        co_await coring::sleep(0ms); // the ticker starts
        const int at_start = ticks;
        char c[4];
        for (std::size_t got = 0; got < lots.size();) got += co_await b.read(std::as_writable_bytes(std::span(c)));
        reader_done = true;
        co_await h;
        // 16384 reads, each ready at once: the reader was suspended every 32 of them, so the ticker ran in between.
        CHECK(ticks - at_start > 100);
    };
    loop.run(body());
}

TEST_CASE("epoll - a cancelled read leaves before any system call and loses no bytes", "[backend][epoll][cancel]") {
    coring::event_loop loop(on_epoll());
    auto body = []() -> coring::task<> {
        auto [a, b] = raw_pair();
        char buf[8] = {};
        bool timed_out = false;
        try {
            (void)co_await coring::timeout(20ms, b.read(std::as_writable_bytes(std::span(buf))));
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        CHECK(timed_out);
        co_await a.write_all("abc");
        const std::size_t n = co_await b.read(std::as_writable_bytes(std::span(buf)));
        CHECK(std::string_view(buf, n) == "abc");
    };
    loop.run(body());
}

TEST_CASE("epoll - a descriptor number closed behind the loop's back and reused starts afresh", "[backend][epoll]") {
    coring::event_loop loop(on_epoll());
    auto body = []() -> coring::task<> {
        auto [c, peer] = raw_pair();
        // c's descriptor is registered with epoll and known "not readable" (a read that had to wait)...
        char buf[4];
        bool timed_out = false;
        try {
            (void)co_await coring::timeout(10ms, c.read(std::as_writable_bytes(std::span(buf))));
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        CHECK(timed_out);
        // ...then closed by hand, behind coring's back, and its number taken by a new socket that is adopted.
        const int fd = c.native_handle();
        ::close(fd);
        auto [c2, peer2] = raw_pair();
        CHECK(c2.native_handle() == fd);
        co_await peer2.write_all("hey!");
        co_await c2.read_exact(std::as_writable_bytes(std::span(buf)));
        CHECK(std::string_view(buf, 4) == "hey!");
        // c still names `fd`: its destructor's close, after c2's, fails harmlessly with EBADF.
    };
    loop.run(body());
}

} // namespace test_backend
