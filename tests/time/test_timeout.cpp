#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace test_timeout {

using namespace std::chrono_literals;
using coring::task;
using clk = std::chrono::steady_clock;

namespace {

using coring_test::after;

/// A pipe whose read end is a coring::file: on io_uring its reads are IORING_OP_READ in the kernel, on epoll reads
/// on the worker pool; cancellable either way. Made and destroyed inside a loop.
struct pipe_pair {
    coring::file r;
    int w = -1;
    pipe_pair() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        r = coring::file(fds[0]);
        w = fds[1];
    }
    pipe_pair(const pipe_pair&) = delete;
    pipe_pair& operator=(const pipe_pair&) = delete;
    ~pipe_pair() { ::close(w); }
};

/// A connected pair of Unix stream sockets as coring streams (r reads what w writes): on io_uring reads are
/// IORING_OP_RECV in the kernel, on epoll they wait parked on the descriptor.
struct socket_pair {
    coring::unix_stream r, w;
    socket_pair() {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
        r = coring::unix_stream(fds[0]);
        w = coring::unix_stream(fds[1]);
    }
};

/// Sends `s` from the socket pair's writing end without the loop (it fits in the socket buffer).
void send_now(socket_pair& p, std::string_view s) {
    REQUIRE(::write(p.w.native_handle(), s.data(), s.size()) == static_cast<ssize_t>(s.size()));
}

/// The reading awaitable of a pipe's read end.
auto read_op(pipe_pair& p, char* buf, std::size_t n) { return p.r.read(std::span(buf, n)); }

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
                    // Far from the 10 s the sleep would take: a deadline that did not fire. Not tighter: in CI's kernel
                    // 6.1 guest (QEMU without KVM, tests two at a time) a 20 ms deadline once came after 3.2 s.
                    CHECK(waited < d + 5s);
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
        // An operation: a read of bytes already sent.
        socket_pair p;
        send_now(p, "op");
        char buf[4] = {};
        const std::size_t n = co_await coring::timeout(1s, p.r.read(std::span(buf)));
        CHECK(n == 2);
        CHECK(std::string(buf, 2) == "op");
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
                CHECK_THROWS_AS(co_await coring::timeout(5ms, read_op(p, buf, sizeof buf)), coring::timeout_error);
                REQUIRE(::write(p.w, "late", 4) == 4);
                const std::size_t n = co_await coring::timeout(1s, read_op(p, buf, sizeof buf));
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
        send_now(p, "now");
        char buf[8];
        // A zero timeout: the read completes in the same io_uring_enter that submits it (on epoll, inside the
        // co_await), before timers fire.
        const std::size_t n = co_await coring::timeout(0ms, p.r.read(std::span(buf)));
        CHECK(n == 3);
        // A deadline already past: the same.
        send_now(p, "past");
        const std::size_t m = co_await coring::timeout(-1s, p.r.read(std::span(buf)));
        CHECK(m == 4);
        CHECK(std::string(buf, 4) == "past");
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
        socket_pair p;
        char buf[4];
        CHECK_THROWS_AS(
            co_await coring::timeout(30s, coring::timeout(3ms, coring::timeout(20s, p.r.read(std::span(buf))))),
            coring::timeout_error);
        const int v = co_await coring::timeout(1s, coring::timeout(1s, after(1ms, 3)));
        CHECK(v == 3);
    }());
}

TEST_CASE("timeout - of a whole task chain cancels the operation deep inside it", "[timeout]") {
    coring::run([]() -> task<> {
        socket_pair p;
        int stage = 0;
        auto deep = [](coring::unix_stream& r, int& s) -> task<std::size_t> {
            s = 1;
            char b[8];
            const std::size_t n = co_await r.read(std::span(b));
            s = 2;
            co_return n;
        };
        auto middle = [](task<std::size_t> inner) -> task<std::size_t> { co_return co_await std::move(inner); };
        CHECK_THROWS_AS(co_await coring::timeout(5ms, middle(deep(p.r, stage))), coring::timeout_error);
        CHECK(stage == 1);
    }());
}

namespace {

constexpr std::size_t race_bytes = 200'000;

/// One round of the race below: `race_bytes` sent in random chunks, read with random deadlines. Returns the bytes
/// received; counts the timeouts in `tos` and clears `ok` if a byte came out of order.
task<std::size_t> race_round(int& tos, bool& ok, unsigned seed) {
    std::size_t got = 0;
    socket_pair p;
    auto writer = coring::spawn([](coring::unix_stream& w, unsigned s) -> task<> {
        std::mt19937 rng(s * 2 + 7);
        std::vector<unsigned char> chunk;
        std::size_t sent = 0;
        while (sent < race_bytes) {
            const std::size_t n = std::min<std::size_t>(race_bytes - sent, 1 + rng() % 64);
            chunk.resize(n);
            for (std::size_t i = 0; i < n; ++i) chunk[i] = static_cast<unsigned char>((sent + i) * 131 % 251);
            co_await w.write_all(std::as_bytes(std::span(chunk)));
            sent += n;
            if (rng() % 2 == 0) co_await coring::sleep(std::chrono::microseconds(rng() % 100));
            else co_await coring::yield_now();
        }
    }(p.w, seed));
    std::mt19937 rng(seed * 2 + 11);
    std::vector<unsigned char> buf(1024);
    while (got < race_bytes) {
        const std::size_t want = 1 + rng() % 1024;
        std::size_t n = 0;
        try {
            n = co_await coring::timeout(std::chrono::microseconds(rng() % 60),
                                         p.r.read(std::as_writable_bytes(std::span(buf).first(want))));
        } catch (const coring::timeout_error&) {
            ++tos;
            continue;
        }
        REQUIRE(n > 0);
        for (std::size_t i = 0; i < n; ++i)
            if (buf[i] != static_cast<unsigned char>((got + i) * 131 % 251)) ok = false;
        got += n;
    }
    co_await writer;
    co_return got;
}

} // namespace

// The race the issue names: a read and its deadline, thousands of times with random timeouts on a socket pair, while
// a writer sends a known byte sequence in random chunks. A read that completed is returned (completion wins) and a
// cancelled one consumed nothing, so the reader must see exactly the sequence: no byte lost, none duplicated.
TEST_CASE("timeout - racing reads and deadlines on a socket pair lose and duplicate no byte", "[timeout][race]") {
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            int timeouts = 0, rounds = 0;
            std::size_t received = 0;
            bool in_order = true;
            coring::event_loop loop(setup.options);
            // Rounds until the race has been run into 1000 times: one round does it natively, a slow machine needs
            // more (in a QEMU guest, on epoll, one round gave 700 to 900 timeouts); at most 10.
            loop.run([](int& tos, int& rounds_run, std::size_t& all_got, bool& ok) -> task<> {
                for (; rounds_run < 10 && (rounds_run == 0 || tos <= 1000); ++rounds_run) {
                    const std::size_t got = co_await race_round(tos, ok, static_cast<unsigned>(rounds_run));
                    all_got += got;
                }
            }(timeouts, rounds, received, in_order));
            INFO("timeouts " << timeouts << " in " << rounds << " round(s)");
            CHECK(received == race_bytes * static_cast<std::size_t>(rounds));
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
            ts.push_back([](coring::file& f, int& to) -> task<> {
                char b[4];
                try {
                    // Positional: any number may be in flight on one file (a pipe ignores the offset).
                    (void)co_await coring::timeout(2ms, f.read_at(std::span(b), 0));
                } catch (const coring::timeout_error&) {
                    ++to;
                }
            }(p.r, timed_out));
        co_await coring::gather(std::move(ts));
        CHECK(timed_out == 3000);
    }());
    CHECK(loop.in_flight() == 0);
    // Only io_uring has a submission queue to fill (on epoll the pipe reads run on the worker pool).
    if (loop.backend() == coring::backend::io_uring) CHECK(loop.stats().sq_full > 0);
}

} // namespace test_timeout
