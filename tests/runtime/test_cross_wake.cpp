// How one loop of a runtime wakes another that sleeps (loop_options::wake): IORING_OP_MSG_RING from the sender's own
// ring, or the target's eventfd; a MSG_RING that fails falls back to the eventfd, and no message waits for a wake.

#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/detail/loop_inbox.hpp>

#include <catch2/catch.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace test_cross_wake {

using namespace std::chrono_literals;
using coring::task;

namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int round_trips = 500;
#else
constexpr int round_trips = 3000;
#endif

struct wake_counts {
    std::uint64_t msg_ring = 0;
    std::uint64_t fallbacks = 0;
};

struct ping_pong_result {
    wake_counts loops[2];
    long sum = 0;
};

wake_counts counts_here() {
    const coring::loop_stats& s = coring::event_loop::current().stats();
    return wake_counts{s.wakes_msg_ring, s.msg_ring_fallbacks};
}

/// Round trips from loop 0 to loop 1 and back, each side asleep while it waits for the other (every tenth after a
/// short sleep, so that the target is surely blocked in its wait); returns both loops' wake counters and the sum the
/// round trips computed.
ping_pong_result ping_pong(coring::cross_wake how, bool break_ring_of_loop1) {
    coring::runtime_options o;
    o.loop.wake = how;
    coring::runtime rt(2, o);
    coring::event_loop* l1 = &rt.loop(1);
    ping_pong_result out;
    rt.run([&](std::size_t i) -> task<> {
        if (i == 1) co_return; // loop 1 keeps serving until loop 0 is done
        if (break_ring_of_loop1) {
            // Not a ring: the kernel answers the MSG_RING with -EBADFD, as for a ring that is gone.
            std::shared_ptr<coring::detail::mailbox> box = coring::detail::inbox_of(*l1, "test");
            const int old = box->set_ring_fd(::eventfd(0, EFD_CLOEXEC));
            if (old >= 0) ::close(old);
        }
        long sum = 0;
        for (int k = 0; k < round_trips; ++k) {
            if (k % 10 == 0) co_await coring::sleep(100us);
            sum += co_await coring::run_on(
                *l1, [](int x) { return x; }, k);
        }
        out.sum = sum;
        out.loops[1] = co_await coring::run_on(*l1, counts_here); // read on loop 1's own thread
        out.loops[0] = counts_here();
    });
    return out;
}

bool kernel_has_msg_ring() {
    coring::event_loop probe;
    return probe.backend() == coring::backend::io_uring && probe.supports(IORING_OP_MSG_RING);
}

} // namespace

TEST_CASE("cross wake - loops asked to wake each other with MSG_RING do and every round trip completes",
          "[runtime][cross_wake][io_uring-only]") {
    if (!kernel_has_msg_ring()) {
        WARN("this kernel has no IORING_OP_MSG_RING (Linux 5.18): loops wake each other by eventfd");
        return;
    }
    const ping_pong_result r = ping_pong(coring::cross_wake::msg_ring, false);
    const auto& counts = r.loops;
    const long sum = r.sum;
    CHECK(sum == long(round_trips) * (round_trips - 1) / 2);
    INFO("MSG_RING wakes: loop 0 " << counts[0].msg_ring << ", loop 1 " << counts[1].msg_ring);
    // Both directions wake by MSG_RING. How many round trips needed a wake at all is scheduling, not coring (the
    // emulated kernel 6.1 guest once gave 258 of 3,000 where a tenth was asked), so only "some" is checked.
    CHECK(counts[0].msg_ring > 0);
    CHECK(counts[1].msg_ring > 0);
    CHECK(counts[0].fallbacks == 0);
    CHECK(counts[1].fallbacks == 0);
}

TEST_CASE("cross wake - loops asked to wake each other by eventfd send no MSG_RING", "[runtime][cross_wake]") {
    const ping_pong_result r = ping_pong(coring::cross_wake::eventfd, false);
    const auto& counts = r.loops;
    const long sum = r.sum;
    CHECK(sum == long(round_trips) * (round_trips - 1) / 2);
    CHECK(counts[0].msg_ring == 0);
    CHECK(counts[1].msg_ring == 0);
}

TEST_CASE("cross wake - a MSG_RING wake that fails is sent by eventfd and that target gets eventfd from then on",
          "[runtime][cross_wake][io_uring-only]") {
    if (!kernel_has_msg_ring()) {
        WARN("this kernel has no IORING_OP_MSG_RING (Linux 5.18): nothing to fall back from");
        return;
    }
    const ping_pong_result r = ping_pong(coring::cross_wake::msg_ring, true);
    const auto& counts = r.loops;
    const long sum = r.sum;
    CHECK(sum == long(round_trips) * (round_trips - 1) / 2);
    // Loop 0's first wake of loop 1 failed (EBADFD: not a ring), went by eventfd, and was the last MSG_RING to it.
    CHECK(counts[0].msg_ring == 1);
    CHECK(counts[0].fallbacks == 1);
    // Loop 1's ring is fine: loop 1 still wakes loop 0 with MSG_RING, never by the fallback (how often: see above).
    CHECK(counts[1].msg_ring > 0);
    CHECK(counts[1].fallbacks == 0);
}

TEST_CASE("cross wake - CORING_CROSS_WAKE that names no wake is refused with a clear exception",
          "[runtime][cross_wake]") {
    ::setenv("CORING_CROSS_WAKE", "carrier-pigeon", 1);
    std::string what;
    try {
        (void)coring::detail::cross_wake_from_environment();
    } catch (const std::invalid_argument& e) {
        what = e.what();
    }
    ::unsetenv("CORING_CROSS_WAKE");
    CHECK(what.find("CORING_CROSS_WAKE=carrier-pigeon") != std::string::npos);
}

TEST_CASE("cross wake - a runtime run from a thread that has a loop of its own returns", "[runtime][cross_wake]") {
    // The coordinator (this thread) posts the loops' exit items while its own loop is not turning: such posts must
    // wake by eventfd, since nothing would submit a MSG_RING queued on the idle loop's ring (run() hung for ever).
    coring::event_loop own;
    coring::runtime rt(2);
    std::atomic<int> done{0};
    rt.run([&](std::size_t) -> task<> {
        co_await coring::sleep(20ms);
        done.fetch_add(1);
    });
    CHECK(done.load() == 2);
    // And after it, a loop of this thread that runs again still works.
    CHECK(own.run([]() -> task<int> { co_return 7; }()) == 7);
}

} // namespace test_cross_wake
