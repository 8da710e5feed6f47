#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test_spawn_on {

using namespace std::chrono_literals;
using coring::task;

namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int per_sender = 20000;
#else
constexpr int per_sender = 100000;
#endif

/// Owned by the receiving loop: only its tasks touch it.
struct receiver_state {
    coring::event_loop* loop = nullptr; // set before run: the target
    std::vector<int> next_seq = std::vector<int>(2, 0);
    int received = 0;
    int out_of_order = 0;
    int wrong_thread = 0;
    coring::event all;
};

/// Counts live instances across threads (coring_test::lifetime counts on one thread only).
struct counted {
    static inline std::atomic<int> alive{0};
    counted() noexcept { alive.fetch_add(1); }
    counted(const counted&) noexcept { alive.fetch_add(1); }
    counted(counted&&) noexcept { alive.fetch_add(1); }
    counted& operator=(const counted&) = default;
    ~counted() { alive.fetch_sub(1); }
};

task<> record(receiver_state* s, std::size_t sender, int seq) {
    if (coring::event_loop::try_current() != s->loop) ++s->wrong_thread;
    if (s->next_seq[sender] != seq) ++s->out_of_order;
    s->next_seq[sender] = seq + 1;
    if (++s->received == 2 * per_sender) s->all.set();
    co_return;
}

} // namespace

TEST_CASE("spawn_on - tasks from two loops start once each on the target and in order per sender",
          "[runtime][spawn_on]") {
    receiver_state st;
    coring::runtime rt(3);
    coring::event_loop* target = &rt.loop(2);
    st.loop = target;
    rt.run([&](std::size_t i) -> task<> {
        if (i == 2) {
            co_await st.all.wait();
            co_return;
        }
        for (int k = 0; k < per_sender; ++k) {
            coring::spawn_on(*target, record(&st, i, k));
            if (k % 1024 == 0) co_await coring::yield_now();
        }
    });
    CHECK(st.received == 2 * per_sender);
    CHECK(st.out_of_order == 0);
    CHECK(st.wrong_thread == 0);
}

TEST_CASE("spawn_on - a thread that is no loop starts a task on a runtime's loop", "[runtime][spawn_on]") {
    std::atomic<bool> ran{false};
    std::atomic<bool> on_loop{false};
    coring::runtime rt(1);
    coring::event_loop* target = &rt.loop(0);
    rt.run([&](std::size_t) -> task<> {
        const auto loop_thread = std::this_thread::get_id();
        std::thread foreign([&, loop_thread] {
            coring::spawn_on(*target, [](std::atomic<bool>* r, std::atomic<bool>* ok, std::thread::id t) -> task<> {
                ok->store(std::this_thread::get_id() == t);
                r->store(true);
                co_return;
            }(&ran, &on_loop, loop_thread));
        });
        for (int n = 0; n < 2000 && !ran.load(); ++n) co_await coring::sleep(1ms);
        foreign.join();
    });
    CHECK(ran.load());
    CHECK(on_loop.load());
}

TEST_CASE("spawn_on - an exception ends up with the target loop's handler", "[runtime][spawn_on]") {
    std::mutex m;
    std::vector<std::string> reports;
    std::vector<coring::event_loop*> report_loops;
    coring::runtime_options o;
    o.loop.exception_handler = [&](std::exception_ptr e) {
        std::lock_guard<std::mutex> lock(m);
        report_loops.push_back(coring::event_loop::try_current());
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            reports.emplace_back(ex.what());
        }
    };
    coring::runtime rt(2, o);
    coring::event_loop* target = &rt.loop(1);
    rt.run([&](std::size_t i) -> task<> {
        if (i == 1) {
            co_await coring::sleep(50ms); // stays up while the task arrives
            co_return;
        }
        coring::spawn_on(*target, []() -> task<int> {
            co_await coring::yield_now();
            throw std::runtime_error("remote failure");
        }());
        co_return;
    });
    REQUIRE(reports.size() == 1);
    CHECK(reports[0] == "remote failure");
    CHECK(report_loops[0] == target);
}

TEST_CASE("spawn_on - a loop that is not shared is refused from another thread", "[runtime][spawn_on]") {
    coring::event_loop loop;
    std::string error;
    std::thread other([&] {
        try {
            coring::spawn_on(loop, []() -> task<> { co_return; }());
        } catch (const std::logic_error& e) {
            error = e.what();
        }
    });
    other.join();
    CHECK(coring_test::contains(error, "neither the current loop nor a loop of a runtime"));
    CHECK(loop.task_count() == 0);
}

TEST_CASE("spawn_on - a loop that has exited refuses tasks and every frame sent is destroyed once",
          "[runtime][spawn_on]") {
    counted::alive = 0;
    std::atomic<int> refused{0};
    std::atomic<int> sent{0};
    // Loop 0 blocks its thread below, and a loop's MSG_RING wake-ups leave with its next io_uring_enter, as its I/O
    // does: loop 1 would sleep through them. The eventfd wakes it at once.
    coring::runtime_options o;
    o.loop.wake = coring::cross_wake::eventfd;
    coring::runtime rt(2, o);
    coring::event_loop* l1 = &rt.loop(1);
    rt.run([&](std::size_t i) -> task<> {
        if (i == 1) co_return;
        // Sends, blocking its own thread on purpose, stops the runtime after 20 tasks and goes on: loop 1 runs the
        // first tasks, cancels those that arrive while it drains at their start, destroys those it never took, and
        // refuses the rest once it has exited.
        for (int n = 0; n < 5000; ++n) {
            try {
                coring::spawn_on(*l1, [](counted) -> task<> { co_return; }(counted()));
                sent.fetch_add(1);
            } catch (const std::runtime_error&) {
                refused.fetch_add(1);
                break;
            }
            if (n == 20) coring::runtime::current()->stop();
            std::this_thread::sleep_for(std::chrono::microseconds(500));
        }
        co_return;
    });
    CHECK(refused.load() == 1);
    CHECK(sent.load() >= 21);
    CHECK(counted::alive.load() == 0);
}

TEST_CASE("spawn_on - from a thread that is no loop a runtime's exited loop is refused", "[runtime][spawn_on]") {
    counted::alive = 0;
    coring::runtime rt(2);
    coring::event_loop* l0 = &rt.loop(0);
    rt.run([](std::size_t) -> task<> { co_return; });
    // The loops are gone; the runtime still knows their mailboxes, closed.
    CHECK_THROWS_AS(coring::spawn_on(*l0, [](counted) -> task<> { co_return; }(counted())), std::runtime_error);
    CHECK(counted::alive.load() == 0);
}

} // namespace test_spawn_on
