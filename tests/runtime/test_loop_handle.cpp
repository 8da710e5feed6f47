#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test_loop_handle {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// A lifetime counter that works across threads.
struct counted {
    static inline std::atomic<int> alive{0};
    counted() noexcept { alive.fetch_add(1); }
    counted(const counted&) noexcept { alive.fetch_add(1); }
    counted(counted&&) noexcept { alive.fetch_add(1); }
    counted& operator=(const counted&) = default;
    ~counted() { alive.fetch_sub(1); }
};

#if defined(__SANITIZE_THREAD__)
constexpr int per_thread = 2000;
#else
constexpr int per_thread = 20000;
#endif

/// Runs `fn` on a thread joined at destruction; what it throws is kept, not std::terminate (a loop that failed
/// early refuses the thread's call, and the test then fails on its checks instead of aborting).
class helper_thread {
public:
    template <class F>
    explicit helper_thread(F fn)
        : t_([this, fn = std::move(fn)]() mutable {
              try {
                  fn();
              } catch (...) {
                  failed_ = true;
              }
          }) {}
    helper_thread(const helper_thread&) = delete;
    helper_thread& operator=(const helper_thread&) = delete;
    ~helper_thread() { join(); }
    void join() {
        if (t_.joinable()) t_.join();
    }
    [[nodiscard]] bool failed() const noexcept { return failed_; }

private:
    std::atomic<bool> failed_{false};
    std::thread t_;
};

/// Waits (blocking the calling thread) until `flag` is set, for at most 10 s.
bool wait_for(const std::atomic<bool>& flag) {
    for (const auto until = std::chrono::steady_clock::now() + 10s; !flag.load();) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

} // namespace

TEST_CASE("loop_handle - a thread hands coring::run's loop a result while the loop sleeps", "[runtime][loop_handle]") {
    coring_test::stopwatch clock;
    double woke_at = 0;
    std::uint64_t turns_waiting = 0;
    const int got = coring::run([](double& woke_at, coring_test::stopwatch& clock, std::uint64_t& turns) -> task<int> {
        coring::promise<int> p;
        coring::future<int> f = p.get_future();
        coring::event_loop& loop = coring::event_loop::current();
        // The handle is made on the loop's thread and moved into the thread; the lambda holds the promise by
        // reference, which stays alive while main waits.
        helper_thread later([h = loop.handle(), &p] {
            std::this_thread::sleep_for(50ms);
            h.call_soon_threadsafe([&p] { p.set_value(42); });
        });
        const std::uint64_t before = loop.stats().turns;
        const int v = co_await f;
        turns = loop.stats().turns - before;
        woke_at = clock.seconds();
        co_return v;
    }(woke_at, clock, turns_waiting));
    CHECK(got == 42);
    CHECK(woke_at >= 0.045);
    CHECK(turns_waiting < 50); // asleep in the kernel meanwhile, not spinning
}

TEST_CASE("loop_handle - a call from the loop's own thread runs, even when main returns right after it",
          "[runtime][loop_handle]") {
    // call_soon would be a task, which the drain at the end of run() cancels before it starts.
    int own = 0;
    std::vector<int> order;
    coring::run([](int& own, std::vector<int>& order) -> task<> {
        const coring::loop_handle h = coring::event_loop::current().handle();
        h.call_soon_threadsafe([&own] { ++own; });
        h.call_soon_threadsafe([&order] { order.push_back(2); });
        order.push_back(1); // never inline
        co_return;
    }(own, order));
    CHECK(own == 1);
    CHECK(order == std::vector<int>{1, 2});
}

TEST_CASE("loop_handle - a cancelled task's clean-up that waits for another thread's call is waited for by the drain",
          "[runtime][loop_handle]") {
    int got = 0;
    bool refused = false;
    std::unique_ptr<helper_thread> worker;
    coring::run([](int& got, std::unique_ptr<helper_thread>& worker) -> task<> {
        auto cleanup = [](int& got, std::unique_ptr<helper_thread>& worker) -> task<> {
            try {
                co_await coring::sleep(10s);
            } catch (const coring::cancelled_error&) {}
            // Cancelled by the drain: hand the clean-up's result over from a thread, as a C library's callback would.
            coring::promise<int> p;
            coring::future<int> f = p.get_future();
            worker = std::make_unique<helper_thread>([h = coring::event_loop::current().handle(), &p] {
                std::this_thread::sleep_for(50ms);
                h.call_soon_threadsafe([&p] { p.set_value(7); });
            });
            got = co_await coring::shield(f);
        };
        coring::spawn(cleanup(got, worker)).detach();
        co_await coring::yield_now(); // it starts sleeping
    }(got, worker));
    worker->join();
    refused = worker->failed();
    CHECK(got == 7);
    CHECK_FALSE(refused);
}

TEST_CASE("loop_handle - without a live handle, waiting for another thread is a deadlock again",
          "[runtime][loop_handle]") {
    std::atomic<bool> dropping{false};
    bool dropped_before_report = false;
    std::unique_ptr<helper_thread> holder;
    std::string error;
    try {
        coring::run([](std::unique_ptr<helper_thread>& holder, std::atomic<bool>& dropping) -> task<> {
            holder = std::make_unique<helper_thread>([h = coring::event_loop::current().handle(), &dropping]() mutable {
                std::this_thread::sleep_for(30ms);
                dropping = true;
                h.reset();
            });
            coring::promise<void> never;
            co_await never.get_future(); // nobody will set it; only the handle keeps the loop waiting
        }(holder, dropping));
    } catch (const std::runtime_error& e) {
        error = e.what();
        dropped_before_report = dropping.load(); // a loop that did not wait for the handle reports at once
    }
    holder.reset();
    CHECK(dropped_before_report);
    CHECK(coring_test::contains(error, "deadlock"));
}

TEST_CASE("loop_handle - run() does not wait for a handle another thread still holds", "[runtime][loop_handle]") {
    counted::alive = 0;
    std::atomic<bool> loop_done{false};
    std::atomic<bool> call_refused{false};
    std::unique_ptr<helper_thread> holder;
    coring_test::stopwatch clock;
    {
        coring::loop_options o;
        o.shutdown_timeout = 20s; // a drain that waited for the handle would show as a 20 s run
        coring::event_loop loop(o);
        loop.run([](std::unique_ptr<helper_thread>& holder, std::atomic<bool>& loop_done,
                    std::atomic<bool>& refused) -> task<> {
            holder =
                std::make_unique<helper_thread>([h = coring::event_loop::current().handle(), &loop_done, &refused] {
                    if (!wait_for(loop_done)) return;
                    try {
                        h.call_soon_threadsafe([c = counted()] {});
                    } catch (const std::runtime_error&) {
                        refused = true;
                    }
                });
            co_return;
        }(holder, loop_done, call_refused));
        CHECK(clock.seconds() < 10);
    }
    loop_done = true; // the loop is destroyed now: the handle's call must be refused, its function freed
    holder.reset();
    CHECK(call_refused.load());
    CHECK(counted::alive == 0);
}

TEST_CASE("loop_handle - calls made while the loop is between two runs run in the second", "[runtime][loop_handle]") {
    coring::event_loop loop;
    coring::loop_handle h;
    loop.run([](coring::loop_handle& h) -> task<> {
        h = coring::event_loop::current().handle();
        co_return;
    }(h));
    std::atomic<int> calls{0};
    std::thread t([&] { h.call_soon_threadsafe([&] { calls.fetch_add(1); }); });
    t.join();
    CHECK(calls.load() == 0); // nobody runs the loop now
    loop.run([](coring::loop_handle& h, std::atomic<int>& calls) -> task<> {
        // The posted call runs at the top of the first turn; then another thread's call wakes the sleeping loop.
        coring::promise<void> p;
        coring::future<void> f = p.get_future();
        helper_thread later([&h, &p] {
            std::this_thread::sleep_for(20ms);
            h.call_soon_threadsafe([&p] { p.set_value(); });
        });
        co_await f;
        CHECK(calls.load() == 1);
    }(h, calls));
    CHECK_FALSE(h.exited());
    h.reset();
    CHECK_FALSE(h.valid());
}

TEST_CASE("loop_handle - many threads, every call runs once on the loop's thread, in order per thread",
          "[runtime][loop_handle]") {
    constexpr int threads = 4;
    std::vector<int> next(threads, 0);
    int out_of_order = 0;
    int wrong_thread = 0;
    int received = 0;
    coring::event_loop loop;
    coring::event_loop* const target = &loop;
    loop.run([&]() -> task<> {
        coring::promise<void> all_in;
        coring::future<void> done = all_in.get_future();
        const coring::loop_handle h = coring::event_loop::current().handle();
        std::vector<std::thread> senders;
        for (int t = 0; t < threads; ++t)
            senders.emplace_back([&, h, t] {
                for (int k = 0; k < per_thread; ++k)
                    h.call_soon_threadsafe([&, t, k] {
                        if (coring::event_loop::try_current() != target) ++wrong_thread;
                        if (next[static_cast<std::size_t>(t)] != k) ++out_of_order;
                        next[static_cast<std::size_t>(t)] = k + 1;
                        if (++received == threads * per_thread) all_in.set_value();
                    });
            });
        co_await done;
        for (auto& s : senders) s.join();
    }());
    CHECK(received == threads * per_thread);
    CHECK(out_of_order == 0);
    CHECK(wrong_thread == 0);
}

TEST_CASE("loop_handle - on the loop's own thread a call runs at the next turn", "[runtime][loop_handle]") {
    std::vector<int> order;
    coring::run([](std::vector<int>& order) -> task<> {
        const coring::loop_handle h = coring::event_loop::current().handle();
        h.call_soon_threadsafe([&order] { order.push_back(2); });
        order.push_back(1);
        co_await coring::yield_now();
        co_await coring::yield_now();
        order.push_back(3);
    }(order));
    CHECK(order == std::vector<int>{1, 2, 3});
}

TEST_CASE("loop_handle - the last copy dropped on the loop's own thread ends the listening", "[runtime][loop_handle]") {
    std::string error;
    try {
        coring::run([]() -> task<> {
            {
                coring::loop_handle a = coring::event_loop::current().handle();
                coring::loop_handle b = a; // copies share one listening
                a.reset();
            }
            coring::promise<void> never;
            // Were the listening not ended, this would wait for ever (until ctest's timeout): no timer here, since a
            // timer is work and would hide the deadlock.
            co_await never.get_future();
        }());
    } catch (const std::runtime_error& e) {
        error = e.what();
    }
    CHECK(coring_test::contains(error, "deadlock"));
}

TEST_CASE("loop_handle - misuse is a clear exception", "[runtime][loop_handle]") {
    const coring::loop_handle empty;
    CHECK_FALSE(empty.valid());
    CHECK_FALSE(empty.exited());
    CHECK_THROWS_AS(empty.call_soon_threadsafe([] {}), std::logic_error);
    coring::event_loop loop;
    std::string error;
    std::thread other([&] {
        try {
            (void)loop.handle(); // only the loop's own thread may make one
        } catch (const std::logic_error& e) {
            error = e.what();
        }
    });
    other.join();
    CHECK(coring_test::contains(error, "handle"));
    // Without a handle, a standalone loop of another thread is refused, and the message says what to do instead.
    std::string refused;
    std::thread poster([&] {
        try {
            loop.call_soon_threadsafe([] {});
        } catch (const std::logic_error& e) {
            refused = e.what();
        }
    });
    poster.join();
    CHECK(coring_test::contains(refused, "loop_handle"));
}

TEST_CASE("loop_handle - a handle of a runtime's loop works as the runtime's own call_soon_threadsafe",
          "[runtime][loop_handle]") {
    coring::runtime rt(2);
    std::atomic<int> on_zero{0};
    rt.run([&](std::size_t i) -> task<> {
        if (i != 0) co_return;
        coring::event_loop* const me = &coring::event_loop::current();
        coring::promise<void> p;
        coring::future<void> f = p.get_future();
        helper_thread t([h = me->handle(), &p, &on_zero, me] {
            h.call_soon_threadsafe([&p, &on_zero, me] {
                if (coring::event_loop::try_current() == me) on_zero.fetch_add(1);
                p.set_value();
            });
        });
        co_await f;
    });
    CHECK(on_zero.load() == 1);
}

} // namespace test_loop_handle
