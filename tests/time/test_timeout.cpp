#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using coring::task;
using clk = std::chrono::steady_clock;

namespace {

task<int> after(std::chrono::milliseconds d, int v) {
    co_await coring::sleep(d);
    co_return v;
}

/// A pipe closed on scope exit.
struct pipe_pair {
    int r = -1, w = -1;
    pipe_pair() {
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        r = fds[0];
        w = fds[1];
    }
    pipe_pair(const pipe_pair&) = delete;
    pipe_pair& operator=(const pipe_pair&) = delete;
    ~pipe_pair() {
        ::close(r);
        ::close(w);
    }
};

/// A connected pair of Unix stream sockets (r reads what w writes), closed on scope exit.
struct socket_pair {
    int r = -1, w = -1;
    socket_pair() {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        r = fds[0];
        w = fds[1];
    }
    socket_pair(const socket_pair&) = delete;
    socket_pair& operator=(const socket_pair&) = delete;
    ~socket_pair() {
        ::close(r);
        ::close(w);
    }
};

auto read_op(int fd, char* buf, unsigned n) {
    return coring::submit([fd, buf, n](io_uring_sqe* s) { io_uring_prep_read(s, fd, buf, n, 0); });
}

} // namespace

TEST_CASE("timeout - an awaitable still running at the deadline is cancelled and timeout_error thrown", "[timeout]") {
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            coring::event_loop loop(setup.options);
            loop.run([]() -> task<> {
                for (auto d : {20ms, 300ms}) { // 300 ms: a far deadline (it once came from the coarse clock)
                    const auto t0 = clk::now();
                    CHECK_THROWS_AS(co_await coring::timeout(d, coring::sleep(10s)), coring::timeout_error);
                    const auto waited = clk::now() - t0;
                    CHECK(waited >= d);
                    CHECK(waited < d + 1s);
                }
                // The task itself was not cancelled: it goes on waiting normally.
                co_await coring::sleep(1ms);
            }());
            CHECK(loop.in_flight() == 0);
        }
    }
}

TEST_CASE("timeout - an awaitable that finishes in time returns its value and leaves no timer", "[timeout]") {
    coring::event_loop loop;
    loop.run([]() -> task<> {
        const int v = co_await coring::timeout(1s, after(5ms, 3));
        CHECK(v == 3);
        const int nop = co_await coring::timeout(1s, coring::submit([](io_uring_sqe* s) { io_uring_prep_nop(s); }));
        CHECK(nop == 0);
        co_await coring::timeout(1s, coring::yield_now());
        // No timer was left behind: a loop with nothing to do now reports it instead of waiting for a stale deadline.
    }());
    CHECK(loop.in_flight() == 0);
}

TEST_CASE("timeout - a kernel read is cancelled in the kernel and the pipe keeps its data", "[timeout]") {
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            coring::event_loop loop(setup.options);
            loop.run([]() -> task<> {
                pipe_pair p;
                char buf[16];
                CHECK_THROWS_AS(co_await coring::timeout(5ms, read_op(p.r, buf, sizeof buf)), coring::timeout_error);
                REQUIRE(::write(p.w, "late", 4) == 4);
                const int n = co_await coring::timeout(1s, read_op(p.r, buf, sizeof buf));
                CHECK(n == 4);
                CHECK(std::string(buf, 4) == "late");
            }());
            CHECK(loop.in_flight() == 0);
        }
    }
}

TEST_CASE("timeout - completion wins when it is there by the deadline", "[timeout]") {
    coring::run([]() -> task<> {
        // A socket, not a pipe: before Linux 6.4 a pipe cannot be read without blocking from io_uring's first try
        // (no FMODE_NOWAIT), so even a read of waiting bytes goes to a worker thread and completes after the enter.
        socket_pair p;
        REQUIRE(::write(p.w, "now", 3) == 3);
        char buf[8];
        // A zero timeout: the read completes in the same io_uring_enter that submits it, before timers fire.
        const int n = co_await coring::timeout(0ms, read_op(p.r, buf, sizeof buf));
        CHECK(n == 3);
        const int nop = co_await coring::timeout(-1s, coring::submit([](io_uring_sqe* s) { io_uring_prep_nop(s); }));
        CHECK(nop == 0);
        // A past deadline gives nothing that needs another turn a chance (Go's rule): a task that yields loses.
        CHECK_THROWS_AS(co_await coring::timeout_at(clk::now() - 1h, after(0ms, 8)), coring::timeout_error);
    }());
}

TEST_CASE("timeout - a cancellation from outside stays cancelled_error, not timeout_error", "[timeout][cancel]") {
    coring::run([]() -> task<> {
        auto h = coring::spawn(coring::timeout(10s, coring::sleep(20s)));
        co_await coring::sleep(2ms);
        h.cancel();
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);
        // Both at once: the deadline has passed and the caller is cancelled in the same turn.
        auto both = coring::spawn(coring::timeout(1ms, coring::sleep(20s)));
        co_await coring::yield_now();
        co_await coring::sleep(3ms); // the deadline passes while `both` waits
        both.cancel();
        try {
            co_await both;
        } catch (const coring::cancelled_error&) {
        } catch (const coring::timeout_error&) {
            // Also correct: the timeout fired (and finished the task) before the cancellation came.
        }
        CHECK(both.done());
    }());
}

TEST_CASE("timeout - nested timeouts: the inner or the outer deadline, whichever comes first", "[timeout]") {
    coring::run([]() -> task<> {
        // Inner first: the inner timeout_error passes through the outer one unchanged.
        bool inner_fired = false;
        try {
            (void)co_await coring::timeout(1s, coring::timeout(5ms, after(10s, 1)));
        } catch (const coring::timeout_error&) {
            inner_fired = true;
        }
        CHECK(inner_fired);
        // Outer first: the inner sees a cancellation from outside (not its own deadline) and the outer times out.
        const auto t0 = clk::now();
        CHECK_THROWS_AS(co_await coring::timeout(5ms, coring::timeout(10s, after(10s, 2))), coring::timeout_error);
        CHECK(clk::now() - t0 < 1s);
        // Deep: three levels around a kernel read, all in one task, no extra allocation.
        pipe_pair p;
        char buf[4];
        CHECK_THROWS_AS(co_await coring::timeout(30s, coring::timeout(3ms, coring::timeout(20s, read_op(p.r, buf, 4)))),
                        coring::timeout_error);
        const int v = co_await coring::timeout(1s, coring::timeout(1s, after(1ms, 3)));
        CHECK(v == 3);
    }());
}

TEST_CASE("timeout - of a whole task chain cancels the operation deep inside it", "[timeout]") {
    coring::run([]() -> task<> {
        pipe_pair p;
        int stage = 0;
        auto deep = [](int fd, int& s) -> task<int> {
            s = 1;
            char b[8];
            const int n =
                co_await coring::submit([fd, &b](io_uring_sqe* sqe) { io_uring_prep_read(sqe, fd, b, 8, 0); });
            s = 2;
            co_return n;
        };
        auto middle = [](task<int> inner) -> task<int> { co_return co_await std::move(inner); };
        CHECK_THROWS_AS(co_await coring::timeout(5ms, middle(deep(p.r, stage))), coring::timeout_error);
        CHECK(stage == 1);
    }());
}

// The race the issue names: a read and its deadline, thousands of times with random timeouts on a socket pair, while
// a writer sends a known byte sequence in random chunks. A read that completed is returned (completion wins) and a
// cancelled one consumed nothing, so the reader must see exactly the sequence: no byte lost, none duplicated.
TEST_CASE("timeout - racing reads and deadlines on a socket pair lose and duplicate no byte", "[timeout][race]") {
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            int sv[2];
            REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
            constexpr std::size_t total = 200'000;
            int timeouts = 0;
            std::size_t received = 0;
            bool in_order = true;
            coring::event_loop loop(setup.options);
            loop.run([](int rfd, int wfd, int& tos, std::size_t& got, bool& ok) -> task<> {
                auto writer = coring::spawn([](int fd) -> task<> {
                    std::mt19937 rng(7);
                    std::vector<unsigned char> chunk;
                    std::size_t sent = 0;
                    while (sent < total) {
                        const std::size_t n = std::min<std::size_t>(total - sent, 1 + rng() % 64);
                        chunk.resize(n);
                        for (std::size_t i = 0; i < n; ++i)
                            chunk[i] = static_cast<unsigned char>((sent + i) * 131 % 251);
                        std::size_t off = 0;
                        while (off < n) {
                            const int w = co_await coring::submit([fd, &chunk, off, n](io_uring_sqe* s) {
                                io_uring_prep_send(s, fd, chunk.data() + off, n - off, MSG_NOSIGNAL);
                            });
                            REQUIRE(w > 0);
                            off += static_cast<std::size_t>(w);
                        }
                        sent += n;
                        if (rng() % 2 == 0) co_await coring::sleep(std::chrono::microseconds(rng() % 100));
                        else co_await coring::yield_now();
                    }
                }(wfd));
                std::mt19937 rng(11);
                std::vector<unsigned char> buf(1024);
                while (got < total) {
                    const unsigned want = 1 + rng() % 1024;
                    int n = 0;
                    try {
                        n = co_await coring::timeout(std::chrono::microseconds(rng() % 60),
                                                     coring::submit([rfd, &buf, want](io_uring_sqe* s) {
                                                         io_uring_prep_recv(s, rfd, buf.data(), want, 0);
                                                     }));
                    } catch (const coring::timeout_error&) {
                        ++tos;
                        continue;
                    }
                    REQUIRE(n > 0);
                    for (int i = 0; i < n; ++i)
                        if (buf[static_cast<std::size_t>(i)] != static_cast<unsigned char>((got + i) * 131 % 251))
                            ok = false;
                    got += static_cast<std::size_t>(n);
                }
                co_await writer;
            }(sv[0], sv[1], timeouts, received, in_order));
            ::close(sv[0]);
            ::close(sv[1]);
            INFO("timeouts " << timeouts);
            CHECK(received == total);
            CHECK(in_order);
            CHECK(timeouts > 1000); // the race was really exercised
            CHECK(loop.in_flight() == 0);
        }
    }
}

TEST_CASE("timeout - thousands of operations and their cancellations on an 8-entry ring", "[timeout]") {
    coring::loop_options o;
    o.entries = 8;
    o.cq_entries = 16;
    coring::event_loop loop(o);
    loop.run([]() -> task<> {
        pipe_pair p;
        std::vector<task<>> ts;
        int timed_out = 0;
        for (int i = 0; i < 3000; ++i)
            ts.push_back([](int fd, int& to) -> task<> {
                char b[4];
                try {
                    (void)co_await coring::timeout(
                        2ms, coring::submit([fd, &b](io_uring_sqe* s) { io_uring_prep_read(s, fd, b, 4, 0); }));
                } catch (const coring::timeout_error&) {
                    ++to;
                }
            }(p.r, timed_out));
        co_await coring::gather(std::move(ts));
        CHECK(timed_out == 3000);
    }());
    CHECK(loop.in_flight() == 0);
    CHECK(loop.stats().sq_full > 0);
}
