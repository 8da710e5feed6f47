#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/signal.hpp>

#include <catch2/catch.hpp>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <system_error>

namespace test_wait_signal {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// Restores the thread's signal mask on scope exit, after discarding whatever of SIGUSR1 and SIGUSR2 is still
/// pending, so that the tests that run after this one in the same process see the process as it was.
class signal_mask_guard {
public:
    signal_mask_guard() { ::pthread_sigmask(SIG_SETMASK, nullptr, &saved_); }
    signal_mask_guard(const signal_mask_guard&) = delete;
    signal_mask_guard& operator=(const signal_mask_guard&) = delete;
    ~signal_mask_guard() {
        sigset_t ours;
        ::sigemptyset(&ours);
        ::sigaddset(&ours, SIGUSR1);
        ::sigaddset(&ours, SIGUSR2);
        ::pthread_sigmask(SIG_BLOCK, &ours, nullptr); // pending ones must not be delivered while we discard them
        const timespec zero{0, 0};
        while (::sigtimedwait(&ours, nullptr, &zero) > 0) {}
        ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
    }

private:
    sigset_t saved_;
};

bool blocked(int sig) {
    sigset_t m;
    ::pthread_sigmask(SIG_SETMASK, nullptr, &m);
    return ::sigismember(&m, sig) == 1;
}

} // namespace

TEST_CASE("wait_signal - raise and kill are delivered and returned", "[signal]") {
    signal_mask_guard guard;
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            coring::event_loop loop(setup.options);
            loop.run([]() -> task<> {
                // Thread-directed (raise), sent while the read is already waiting in the kernel.
                auto sender = coring::spawn([]() -> task<> {
                    co_await coring::sleep(5ms);
                    ::raise(SIGUSR1);
                }());
                const int first = co_await coring::wait_signal(SIGUSR1);
                CHECK(first == SIGUSR1);
                co_await sender;
                // Process-directed (kill).
                auto killer = coring::spawn([]() -> task<> {
                    co_await coring::sleep(5ms);
                    ::kill(::getpid(), SIGUSR2);
                }());
                auto w = coring::wait_signal(SIGUSR2);
                const int second = co_await w;
                CHECK(second == SIGUSR2);
                CHECK(w.info().ssi_pid == static_cast<std::uint32_t>(::getpid()));
                co_await killer;
            }());
            CHECK(loop.in_flight() == 0);
        }
    }
}

TEST_CASE("wait_signal - returns whichever signal of the set arrives", "[signal]") {
    signal_mask_guard guard;
    coring::run([]() -> task<> {
        auto w = coring::wait_signal(SIGUSR1, SIGUSR2);
        ::raise(SIGUSR2);
        const int a = co_await w;
        CHECK(a == SIGUSR2);
        // Both pending: one per co_await of the same awaitable, the lower number first (standard signals are
        // dequeued in number order).
        ::raise(SIGUSR2);
        ::raise(SIGUSR1);
        const int b = co_await w;
        const int c = co_await w;
        CHECK(b == SIGUSR1);
        CHECK(c == SIGUSR2);
    }());
}

TEST_CASE("wait_signal - blocks the signals when called, so one raised before the await is not lost", "[signal]") {
    signal_mask_guard guard;
    coring::run([]() -> task<> {
        auto w = coring::wait_signal(SIGUSR1);
        CHECK(blocked(SIGUSR1));
        ::raise(SIGUSR1); // default action: terminate, had it not been blocked
        co_await coring::sleep(2ms);
        const int s = co_await w;
        CHECK(s == SIGUSR1);
    }());
    CHECK(blocked(SIGUSR1)); // stays blocked afterwards (documented)
}

TEST_CASE("wait_signal - a signal after the awaitable is gone waits, pending, for the next wait_signal", "[signal]") {
    signal_mask_guard guard;
    coring::run([]() -> task<> {
        {
            auto w = coring::wait_signal(SIGUSR2);
            ::raise(SIGUSR2);
            const int s = co_await w;
            CHECK(s == SIGUSR2);
        }
        ::raise(SIGUSR2); // nobody is waiting: stays pending
        auto next = coring::wait_signal(SIGUSR2);
        const int s = co_await next;
        CHECK(s == SIGUSR2);
    }());
}

TEST_CASE("wait_signal - a pending wait is cancelled and its descriptor closed", "[signal][cancel]") {
    signal_mask_guard guard;
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            const int baseline = coring_test::open_fds();
            {
                coring::event_loop loop(setup.options);
                loop.run([](int base) -> task<> {
                    auto h = coring::spawn(coring::wait_signal(SIGUSR1));
                    co_await coring::sleep(5ms);
                    CHECK(coring_test::open_fds() > base); // the signalfd (with the ring and the rest)
                    CHECK_FALSE(h.done());
                    h.cancel();
                    CHECK_THROWS_AS(co_await h, coring::cancelled_error);
                    // A task cancelled before it waits does not wait (level-triggered).
                    auto self_cancelled = coring::spawn([]() -> task<int> {
                        try {
                            co_await coring::sleep(1h);
                        } catch (const coring::cancelled_error&) {}
                        co_return co_await coring::wait_signal(SIGUSR2);
                    }());
                    co_await coring::sleep(1ms);
                    self_cancelled.cancel();
                    CHECK_THROWS_AS(co_await self_cancelled, coring::cancelled_error);
                }(baseline));
                CHECK(loop.in_flight() == 0);
            }
            CHECK(coring_test::open_fds() == baseline);
        }
    }
}

TEST_CASE("wait_signal - a signal that arrives with the cancellation is returned or stays pending, never lost",
          "[signal][cancel]") {
    signal_mask_guard guard;
    coring::run([]() -> task<> {
        auto h = coring::spawn(coring::wait_signal(SIGUSR1));
        co_await coring::yield_now(); // the read is submitted
        ::raise(SIGUSR1);
        h.cancel();
        int got = 0;
        try {
            got = co_await h;
        } catch (const coring::cancelled_error&) {
            got = -1;
        }
        if (got == -1) {
            // The cancellation won: the signal was not consumed and is still pending.
            auto again = coring::wait_signal(SIGUSR1);
            got = co_await again;
        }
        CHECK(got == SIGUSR1);
    }());
}

TEST_CASE("wait_signal - invalid signal numbers are rejected before anything is blocked", "[signal]") {
    signal_mask_guard guard;
    const bool usr1_before = blocked(SIGUSR1);
    CHECK_THROWS_AS(coring::wait_signal(0), std::invalid_argument);
    CHECK_THROWS_AS(coring::wait_signal(-1), std::invalid_argument);
    CHECK_THROWS_AS(coring::wait_signal(NSIG), std::invalid_argument);
    CHECK_THROWS_AS(coring::wait_signal(SIGUSR1, 1000), std::invalid_argument);
    CHECK_THROWS_AS(coring::wait_signal(SIGUSR1, SIGKILL), std::invalid_argument);
    CHECK_THROWS_AS(coring::wait_signal(SIGSTOP), std::invalid_argument);
    CHECK_THROWS_AS(coring::wait_signal(32), std::invalid_argument); // reserved by glibc for its threads
    CHECK_THROWS_AS(coring::wait_signal(SIGUSR1, LONG_MAX), std::invalid_argument);
    CHECK_THROWS_AS(coring::wait_signal(4294967306ULL), std::invalid_argument); // 2^32 + 10: no wrap to SIGUSR1
    sigset_t empty;
    ::sigemptyset(&empty);
    CHECK_THROWS_AS(coring::wait_signal(empty), std::invalid_argument);
    CHECK(blocked(SIGUSR1) == usr1_before);
    try {
        (void)coring::wait_signal(0);
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("invalid signal number 0") != std::string::npos);
    }
}

TEST_CASE("wait_signal - a set built with sigaddset", "[signal]") {
    signal_mask_guard guard;
    coring::run([]() -> task<> {
        sigset_t set;
        ::sigemptyset(&set);
        ::sigaddset(&set, SIGUSR2);
        auto w = coring::wait_signal(set);
        ::raise(SIGUSR2);
        const int s = co_await w;
        CHECK(s == SIGUSR2);
    }());
}

TEST_CASE("wait_signal - descriptors are not leaked by awaitables that were never awaited or were moved", "[signal]") {
    signal_mask_guard guard;
    const int baseline = coring_test::open_fds();
    {
        auto a = coring::wait_signal(SIGUSR1);
        CHECK(a.fd() >= 0);
        auto b = std::move(a);
        CHECK(a.fd() == -1);
        CHECK(b.fd() >= 0);
        CHECK(coring_test::open_fds() == baseline + 1);
    }
    CHECK(coring_test::open_fds() == baseline);
}

} // namespace test_wait_signal
