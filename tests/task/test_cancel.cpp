// Cancellation reaches a task wherever it waits: one test per kind of wait, each checking that cancelled_error is
// thrown at the suspension point promptly and that nothing is left behind (in_flight 0, no task left).
#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <span>
#include <thread>

namespace test_cancel {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// Spawns `t`, lets it reach its wait (3 ms, or until `reached` says so), cancels it and checks that it ends with
/// cancelled_error within 5 s. Natively that takes well under a millisecond; in a QEMU guest under TCG (Debian's
/// 6.1 kernel, CI's kernel 6.1 step) cancelling a pipe read in the kernel once took 1.76 s. The waits cancelled here
/// never end by themselves (or after 10 s, the sleep), so 5 s still tells a cancellation that works from one that
/// does not.
task<> cancel_while_waiting(task<> t, std::function<bool()> reached) {
    coring_test::stopwatch sw;
    auto h = coring::spawn(std::move(t));
    co_await coring::sleep(3ms);
    while (reached && !reached() && sw.seconds() < 5.0) co_await coring::sleep(1ms);
    CHECK_FALSE(h.done());
    coring_test::stopwatch since_cancel; // not since the spawn: setting up may take a while under an emulator
    CHECK(h.cancel());
    CHECK_THROWS_AS(co_await h, coring::cancelled_error);
    CHECK(since_cancel.seconds() < 5.0);
}

void run_case(task<> t, std::function<bool()> reached = {}) {
    coring::event_loop loop;
    loop.run(cancel_while_waiting(std::move(t), std::move(reached)));
    CHECK(loop.in_flight() == 0);
    CHECK(loop.task_count() == 0);
}

} // namespace

TEST_CASE("cancel - a sleep", "[cancel]") {
    run_case([]() -> task<> { co_await coring::sleep(10s); }());
}

TEST_CASE("cancel - an io_uring operation, in the kernel", "[cancel]") {
    // Reads nobody writes for, on both backends. A pipe read through coring::file: IORING_OP_READ in the kernel on
    // io_uring, stopped by IORING_OP_ASYNC_CANCEL; on epoll a worker-pool read, woken. A socket read through a stream:
    // IORING_OP_RECV in the kernel on io_uring; on epoll parked on its descriptor, taken off it.
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    run_case([](int fd) -> task<> {
        coring::file f(fd); // closes the read end
        char c;
        (void)co_await f.read(std::as_writable_bytes(std::span(&c, 1)));
    }(fds[0]));
    ::close(fds[1]);
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    run_case([](int fd) -> task<> {
        coring::unix_stream s(fd); // closes its end
        char c;
        (void)co_await s.read(std::span(&c, 1));
    }(sv[0]));
    ::close(sv[1]);
}

TEST_CASE("cancel - a child task, all the way down", "[cancel]") {
    run_case([]() -> task<> {
        auto inner = []() -> task<> { co_await coring::sleep(10s); };
        auto middle = [](task<> t) -> task<> { co_await std::move(t); };
        co_await middle(inner());
    }());
}

TEST_CASE("cancel - a join on another task", "[cancel]") {
    run_case([]() -> task<> {
        auto other = coring::spawn(coring::sleep(10s));
        co_await other;
    }());
}

TEST_CASE("cancel - gather, when_any and task_group", "[cancel]") {
    run_case([]() -> task<> { co_await coring::gather(coring::sleep(10s), coring::sleep(20s)); }());
    run_case([]() -> task<> { (void)co_await coring::when_any(coring::sleep(10s), coring::sleep(20s)); }());
    run_case([]() -> task<> {
        coring::task_group g;
        g.spawn(coring::sleep(10s));
        co_await g.join();
    }());
}

TEST_CASE("cancel - a timeout and what it waits on", "[cancel]") {
    run_case([]() -> task<> { co_await coring::timeout(10s, coring::sleep(20s)); }());
}

TEST_CASE("cancel - the wait lists of event, mutex, semaphore and queue", "[cancel]") {
    run_case([]() -> task<> {
        coring::event e;
        co_await e.wait();
    }());
    run_case([]() -> task<> {
        coring::mutex m;
        auto held = m.try_lock();
        auto g = co_await m.lock();
    }());
    run_case([]() -> task<> {
        coring::semaphore s(0);
        co_await s.acquire();
    }());
    run_case([]() -> task<> {
        coring::queue<int> q;
        (void)co_await q.pop();
    }());
    run_case([]() -> task<> {
        coring::queue<int> q(1);
        REQUIRE(q.try_push(1));
        co_await q.push(2);
    }());
}

TEST_CASE("cancel - to_thread waits for the function, then throws", "[cancel]") {
    // Cancelled once the function runs (a job no worker has begun is withdrawn instead: on a loaded machine 3 ms
    // may not be enough for a worker to begin it).
    std::atomic<bool> started{false}, returned{false};
    run_case(
        [](std::atomic<bool>& s, std::atomic<bool>& r) -> task<> {
            auto work = [&s, &r] {
                s = true;
                std::this_thread::sleep_for(30ms);
                r = true;
            };
            co_await coring::to_thread(std::move(work));
        }(started, returned),
        [&started] { return started.load(); });
    REQUIRE(started);
    CHECK(returned); // the caller resumed only after the function had returned
}

TEST_CASE("cancel - wait_signal", "[cancel]") {
    run_case([]() -> task<> { (void)co_await coring::wait_signal(SIGUSR2); }());
}

} // namespace test_cancel
