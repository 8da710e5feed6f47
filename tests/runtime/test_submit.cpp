// submit(): raw io_uring SQEs, so every test here is [io_uring-only] (on epoll submit() throws std::system_error
// ENOTSUP, checked in test_backend.cpp).
#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

namespace test_submit {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// A pipe closed on scope exit.
struct pipe_pair {
    int r = -1, w = -1;
    pipe_pair() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
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

task<int> read_pipe(int fd, char* buf, unsigned n) {
    co_return co_await coring::submit([=](io_uring_sqe* s) { io_uring_prep_read(s, fd, buf, n, 0); });
}

} // namespace

TEST_CASE("submit - any operation, awaited, res is returned as the kernel reports it", "[submit][io_uring-only]") {
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            coring::event_loop loop(setup.options);
            loop.run([]() -> task<> {
                const int nop = co_await coring::submit([](io_uring_sqe* s) { io_uring_prep_nop(s); });
                CHECK(nop == 0);
                char buf[8];
                const int bad =
                    co_await coring::submit([&buf](io_uring_sqe* s) { io_uring_prep_read(s, -1, buf, 8, 0); });
                CHECK(bad == -EBADF);
                pipe_pair p;
                REQUIRE(::write(p.w, "hello", 5) == 5);
                const int n = co_await read_pipe(p.r, buf, sizeof buf);
                CHECK(n == 5);
                CHECK(std::string(buf, 5) == "hello");
            }());
        }
    }
}

TEST_CASE("submit - a pending operation is cancelled in the kernel and the task gets cancelled_error",
          "[submit][cancel][io_uring-only]") {
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            coring::event_loop loop(setup.options);
            loop.run([]() -> task<> {
                pipe_pair p;
                char buf[8];
                auto h = coring::spawn(read_pipe(p.r, buf, sizeof buf));
                co_await coring::sleep(2ms);
                CHECK_FALSE(h.done());
                h.cancel();
                CHECK_THROWS_AS(co_await h, coring::cancelled_error);
                // The pipe is intact: a later write is read by a later read, nothing was consumed by the cancelled one.
                REQUIRE(::write(p.w, "x", 1) == 1);
                const int n = co_await read_pipe(p.r, buf, sizeof buf);
                CHECK(n == 1);
            }());
            CHECK(loop.in_flight() == 0);
        }
    }
}

TEST_CASE("submit - an operation that completed before its cancellation returns its result",
          "[submit][cancel][io_uring-only]") {
    coring::run([]() -> task<> {
        pipe_pair p;
        char buf[8] = {};
        REQUIRE(::write(p.w, "abc", 3) == 3);
        // The read completes in the same turn it is submitted; the cancellation requested in that turn is too late.
        auto reader = coring::spawn(read_pipe(p.r, buf, sizeof buf));
        co_await coring::yield_now(); // reader submits its read
        reader.cancel();
        int n = -1;
        try {
            n = co_await reader;
        } catch (const coring::cancelled_error&) {
            n = -2; // the kernel stopped it first: allowed, but then the bytes must still be in the pipe
        }
        if (n == -2) {
            n = co_await read_pipe(p.r, buf, sizeof buf);
        }
        CHECK(n == 3);
        CHECK(std::string(buf, 3) == "abc");
    }());
}

TEST_CASE("submit - thousands of cancellations go through on a tiny ring", "[submit][cancel][io_uring-only]") {
    coring::loop_options o;
    o.entries = 8;
    o.cq_entries = 16;
    coring::event_loop loop(o);
    loop.run([]() -> task<> {
        pipe_pair p;
        std::vector<coring::join_handle<int>> hs;
        std::vector<char> bufs(2000 * 8);
        for (int i = 0; i < 2000; ++i)
            hs.push_back(coring::spawn(read_pipe(p.r, &bufs[static_cast<std::size_t>(i) * 8], 8)));
        co_await coring::sleep(5ms);
        for (auto& h : hs) h.cancel();
        int cancelled = 0;
        for (auto& h : hs) {
            try {
                (void)co_await h;
            } catch (const coring::cancelled_error&) {
                ++cancelled;
            }
        }
        CHECK(cancelled == 2000);
    }());
    CHECK(loop.in_flight() == 0);
    CHECK(loop.stats().sq_full > 0);
}

TEST_CASE("submit - link and skip-success flags are stripped so that the awaiter is always resumed",
          "[submit][io_uring-only]") {
    coring::run([]() -> task<> {
        const int a = co_await coring::submit([](io_uring_sqe* s) {
            io_uring_prep_nop(s);
            s->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
        });
        CHECK(a == 0);
        const int b = co_await coring::submit([](io_uring_sqe* s) { io_uring_prep_nop(s); });
        CHECK(b == 0);
    }());
}

TEST_CASE("submit - a multishot operation is stopped after its first completion", "[submit][io_uring-only]") {
    coring::run([]() -> task<> {
        pipe_pair p;
        REQUIRE(::write(p.w, "z", 1) == 1);
        const int mask =
            co_await coring::submit([fd = p.r](io_uring_sqe* s) { io_uring_prep_poll_multishot(s, fd, POLLIN); });
        CHECK((mask & POLLIN) != 0);
    }());
}

TEST_CASE("submit - a kernel timeout as an operation", "[submit][io_uring-only]") {
    coring::run([]() -> task<> {
        __kernel_timespec ts{0, 3'000'000};
        coring_test::stopwatch sw;
        const int r = co_await coring::submit([&ts](io_uring_sqe* s) { io_uring_prep_timeout(s, &ts, 0, 0); });
        CHECK(r == -ETIME);
        CHECK(sw.seconds() >= 0.003);
    }());
}

// GCC 12 destroys a capturing lambda written inside a co_await expression twice (PR 100611, 107288) when a capture has
// a destructor. The documented pattern, a named local moved in, is what this canary keeps working.
TEST_CASE("submit - a prep callable with owning captures, bound to a named local first", "[submit][io_uring-only]") {
    coring::run([]() -> task<> {
        std::string tag(64, 'x'); // heap-allocated: a double destruction would be a double free
        auto prep = [tag](io_uring_sqe* s) {
            io_uring_prep_nop(s);
            s->user_data = tag.size(); // overwritten by the loop; only touches the capture
        };
        const int r = co_await coring::submit(std::move(prep));
        CHECK(r == 0);
        auto op = coring::submit([tag](io_uring_sqe* s) { io_uring_prep_nop(s); });
        const int r2 = co_await std::move(op);
        CHECK(r2 == 0);
    }());
}

} // namespace test_submit
