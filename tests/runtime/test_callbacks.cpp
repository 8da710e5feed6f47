#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test_callbacks {

using namespace std::chrono_literals;
using coring::task;

namespace {

task<> settle(int turns = 3) {
    for (int i = 0; i < turns; ++i) co_await coring::yield_now();
}

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
constexpr int per_thread = 5000;
#else
constexpr int per_thread = 50000;
#endif

} // namespace

TEST_CASE("call_soon - runs after the tasks ready now, in the order of the calls", "[runtime][callbacks]") {
    coring::event_loop loop;
    std::vector<std::string> order;
    loop.run([&]() -> task<> {
        coring::event_loop& l = coring::event_loop::current();
        auto first = l.call_soon([&] { order.push_back("soon 1"); });
        auto second = l.call_soon([&] { order.push_back("soon 2"); });
        CHECK_FALSE(first.done());
        CHECK(first.valid());
        order.push_back("caller");
        co_await settle();
        CHECK(first.done());
        CHECK(second.done());
        CHECK_FALSE(first.cancelled());
        CHECK_FALSE(first.cancel()); // it has run
    }());
    CHECK(order == std::vector<std::string>{"caller", "soon 1", "soon 2"});
    CHECK(loop.task_count() == 0);
}

TEST_CASE("call_soon - a cancelled callback does not run and its function is destroyed", "[runtime][callbacks]") {
    coring::event_loop loop;
    int calls = 0;
    loop.run([&]() -> task<> {
        coring::event_loop& l = coring::event_loop::current();
        coring_test::lifetime token(1);
        auto h = l.call_soon([&calls, token] { calls += token.value; });
        CHECK(coring_test::lifetime::alive == 2);
        CHECK(h.cancel());
        CHECK(h.cancelled());
        CHECK(h.cancel()); // still not run: asking again is harmless
        co_await settle();
        CHECK(h.done());
        CHECK_FALSE(h.cancel());
        h = {}; // the frame, and the function in it, go with the handle
        CHECK(coring_test::lifetime::alive == 1);
    }());
    CHECK(calls == 0);
    CHECK(coring_test::lifetime::alive == 0);
}

TEST_CASE("call_soon - dropping the handle does not cancel the call", "[runtime][callbacks]") {
    coring::event_loop loop;
    int calls = 0;
    loop.run([&]() -> task<> {
        (void)coring::event_loop::current().call_soon([&] { ++calls; });
        co_await settle();
    }());
    CHECK(calls == 1);
}

TEST_CASE("call_soon - the function is destroyed once it has run, though the handle lives on", "[runtime][callbacks]") {
    coring::event_loop loop;
    loop.run([&]() -> task<> {
        coring_test::lifetime token;
        auto h = coring::event_loop::current().call_soon([token] {});
        co_await settle();
        CHECK(h.done());
        CHECK(coring_test::lifetime::alive == 1);
    }());
    CHECK(coring_test::lifetime::alive == 0);
}

TEST_CASE("call_later and call_at - run when due, in deadline order", "[runtime][callbacks]") {
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            coring::event_loop loop(setup.options);
            std::vector<int> order;
            std::vector<double> at;
            coring_test::stopwatch clock;
            loop.run([&]() -> task<> {
                coring::event_loop& l = coring::event_loop::current();
                auto record = [&](int id) {
                    return [&, id] {
                        order.push_back(id);
                        at.push_back(clock.seconds());
                    };
                };
                auto h3 = l.call_later(60ms, record(3));
                auto h1 = l.call_later(20ms, record(1));
                auto h2 = l.call_at(coring::event_loop::time() + 40ms, record(2));
                auto h4 = l.call_at(std::chrono::system_clock::now() + 80ms, record(4));
                auto h0 = l.call_later(-5s, record(0)); // overdue: on the next timer pass
                CHECK(h1.when() >= coring::event_loop::time() + 15ms);
                CHECK(h1.when() <= h2.when());
                co_await coring::sleep(150ms);
                CHECK(h4.done());
            }());
            CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
            REQUIRE(at.size() == 5);
            CHECK(at[1] >= 0.020);
            CHECK(at[2] >= 0.040);
            CHECK(at[3] >= 0.060);
            CHECK(at[4] >= 0.075); // through system_clock: converted once, within the conversion's rounding
        }
    }
}

TEST_CASE("call_later - cancelled before it is due, it never runs and the loop does not wait for it",
          "[runtime][callbacks]") {
    coring::event_loop loop;
    int calls = 0;
    coring_test::stopwatch clock;
    loop.run([&]() -> task<> {
        coring::event_loop& l = coring::event_loop::current();
        auto h = l.call_later(30s, [&] { ++calls; });
        co_await coring::sleep(5ms);
        CHECK(h.cancel());
        co_await settle();
        CHECK(h.done());
        CHECK(coring::event_loop::current().task_count() == 1); // main alone
    }());
    CHECK(calls == 0);
    CHECK(clock.seconds() < 10);
}

TEST_CASE("call_later - callbacks still pending when run() ends are dropped uncalled", "[runtime][callbacks]") {
    int calls = 0;
    {
        coring::event_loop loop;
        loop.run([&]() -> task<> {
            coring_test::lifetime token;
            (void)coring::event_loop::current().call_later(1h, [&calls, token] { ++calls; });
            co_return;
        }());
        CHECK(loop.task_count() == 0);
    }
    CHECK(calls == 0);
    CHECK(coring_test::lifetime::alive == 0);
}

TEST_CASE("callbacks - an exception goes to the loop's exception handler", "[runtime][callbacks]") {
    coring::loop_options o;
    std::vector<std::string> reports;
    o.exception_handler = [&](std::exception_ptr e) {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            reports.emplace_back(ex.what());
        }
    };
    coring::event_loop loop(o);
    int after = 0;
    loop.run([&]() -> task<> {
        coring::event_loop& l = coring::event_loop::current();
        (void)l.call_soon([] { throw std::runtime_error("soon failed"); });
        (void)l.call_later(1ms, [] { throw std::runtime_error("later failed"); });
        (void)l.call_later(2ms, [&] { ++after; }); // the loop carries on
        co_await coring::sleep(20ms);
    }());
    CHECK(reports == std::vector<std::string>{"soon failed", "later failed"});
    CHECK(after == 1);
}

TEST_CASE("callbacks - a callback may schedule and cancel others", "[runtime][callbacks]") {
    coring::event_loop loop;
    std::vector<int> order;
    loop.run([&]() -> task<> {
        coring::event_loop& l = coring::event_loop::current();
        coring::callback_handle victim = l.call_later(10ms, [&] { order.push_back(99); });
        (void)l.call_soon([&] {
            order.push_back(1);
            victim.cancel();
            (void)coring::event_loop::current().call_soon([&] { order.push_back(2); });
            (void)coring::event_loop::current().call_later(1ms, [&] { order.push_back(3); });
        });
        co_await coring::sleep(30ms);
    }());
    CHECK(order == std::vector<int>{1, 2, 3});
}

TEST_CASE("call_soon_threadsafe - other threads hand a runtime's loop results through a promise",
          "[runtime][callbacks]") {
    constexpr int threads = 4;
    coring::runtime rt(1);
    coring::event_loop* target = &rt.loop(0);
    std::vector<int> next(threads, 0);
    int out_of_order = 0;
    int wrong_thread = 0;
    int received = 0;
    int awaited = 0;
    rt.run([&](std::size_t) -> task<> {
        coring::promise<int> all_in;
        coring::future<int> done = all_in.get_future();
        std::vector<std::thread> senders;
        for (int t = 0; t < threads; ++t)
            senders.emplace_back([&, t] {
                for (int k = 0; k < per_thread; ++k)
                    target->call_soon_threadsafe([&, t, k] {
                        if (coring::event_loop::try_current() != target) ++wrong_thread;
                        if (next[t] != k) ++out_of_order;
                        next[t] = k + 1;
                        if (++received == threads * per_thread) all_in.set_value(received);
                    });
            });
        awaited = co_await done;
        for (auto& s : senders) s.join();
    });
    CHECK(received == threads * per_thread);
    CHECK(awaited == threads * per_thread);
    CHECK(out_of_order == 0);
    CHECK(wrong_thread == 0);
}

TEST_CASE("call_soon_threadsafe - wakes a loop that sleeps with nothing else to do", "[runtime][callbacks]") {
    coring::runtime rt(1);
    coring::event_loop* target = &rt.loop(0);
    coring_test::stopwatch clock;
    double woke_at = 0;
    rt.run([&](std::size_t) -> task<> {
        coring::promise<void> p;
        coring::future<void> f = p.get_future();
        std::thread later([&] {
            std::this_thread::sleep_for(50ms);
            target->call_soon_threadsafe([&] { p.set_value(); });
        });
        co_await f;
        woke_at = clock.seconds();
        later.join();
    });
    CHECK(woke_at >= 0.045);
    CHECK(woke_at < 5);
}

TEST_CASE("call_soon_threadsafe - refused for a standalone loop of another thread", "[runtime][callbacks]") {
    SECTION("standalone") {
        coring::event_loop loop;
        std::string error;
        std::thread other([&] {
            try {
                loop.call_soon_threadsafe([] {});
            } catch (const std::logic_error& e) {
                error = e.what();
            }
        });
        other.join();
        CHECK(error.find("call_soon_threadsafe") != std::string::npos);
    }
    SECTION("on the loop's own thread it is call_soon") {
        coring::event_loop loop;
        int calls = 0;
        loop.run([&]() -> task<> {
            coring::event_loop::current().call_soon_threadsafe([&] { ++calls; });
            co_await settle();
        }());
        CHECK(calls == 1);
    }
}

TEST_CASE("call_soon_threadsafe - calls posted before the runtime stops all run, and their functions are freed",
          "[runtime][callbacks]") {
    counted::alive = 0;
    std::atomic<int> calls{0};
    {
        coring::runtime rt(1);
        coring::event_loop* target = &rt.loop(0);
        rt.run([&](std::size_t) -> task<> {
            // Posted while the loop's main blocks its thread: they run after main ends, before the loop exits
            // (the runtime's exit message comes after them).
            std::thread t([&] {
                for (int k = 0; k < 100; ++k) target->call_soon_threadsafe([&, c = counted()] { calls.fetch_add(1); });
            });
            t.join();
            co_return;
        });
    }
    CHECK(calls.load() == 100);
    CHECK(counted::alive == 0);
}

TEST_CASE("call_at - cancelled by a callback due in the same timer pass, it does not run", "[runtime][callbacks]") {
    coring::event_loop loop;
    int ran = 0;
    bool cancel_said = false;
    loop.run([&]() -> task<> {
        coring::event_loop& l = coring::event_loop::current();
        const auto t = coring::event_loop::time() + 10ms;
        coring::callback_handle victim;
        auto killer = l.call_at(t, [&] { cancel_said = victim.cancel(); });
        victim = l.call_at(t + 1us, [&] { ++ran; });
        co_await coring::yield_now();      // both callback tasks start and arm their timers
        std::this_thread::sleep_for(30ms); // both due by the next timer pass
        co_await coring::sleep(50ms);
        CHECK(victim.cancelled());
    }());
    CHECK(cancel_said);
    CHECK(ran == 0);
}

TEST_CASE("call_later - cancelled after its timer fired but before it ran, it does not run", "[runtime][callbacks]") {
    coring::event_loop loop;
    int ran = 0;
    bool said = false;
    loop.run([&]() -> task<> {
        auto h = coring::event_loop::current().call_later(5ms, [&] { ++ran; });
        co_await coring::yield_now();      // the callback task arms its timer
        std::this_thread::sleep_for(20ms); // due
        co_await coring::yield_now();      // this task is queued first, then the timer pass queues the callback
        said = h.cancel();
        co_await coring::sleep(20ms);
    }());
    CHECK(said);
    CHECK(ran == 0);
}

TEST_CASE("callbacks - an exception is reported at once, though the handle is kept", "[runtime][callbacks]") {
    coring::loop_options o;
    std::vector<double> reported_at;
    coring_test::stopwatch clock;
    o.exception_handler = [&](std::exception_ptr) { reported_at.push_back(clock.seconds()); };
    coring::event_loop loop(o);
    loop.run([&]() -> task<> {
        coring::callback_handle kept =
            coring::event_loop::current().call_soon([] { throw std::runtime_error("boom"); });
        co_await coring::sleep(100ms);
        CHECK(kept.done());
        CHECK(reported_at.size() == 1);
    }());
    REQUIRE(reported_at.size() == 1);
    CHECK(reported_at[0] < 0.09);
}

TEST_CASE("callbacks - a callback that replaces its own handle (a ticker)", "[runtime][callbacks]") {
    coring::event_loop loop;
    int ticks = 0;
    struct ticker {
        coring::callback_handle h;
        int* ticks;
        void tick() {
            if (++*ticks < 5) h = coring::event_loop::current().call_later(1ms, [this] { tick(); });
        }
    } t{{}, &ticks};
    loop.run([&]() -> task<> {
        t.h = coring::event_loop::current().call_soon([&] { t.tick(); });
        co_await coring::sleep(50ms);
    }());
    CHECK(ticks == 5);
}

} // namespace test_callbacks
