#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace test_condition {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::settle;

struct shared_jobs {
    coring::mutex m;
    coring::condition cv;
    std::deque<int> jobs;
    bool closing = false;
};

/// Takes jobs until `closing`, recording each with the worker id; checks the lock is held whenever it looks.
task<> worker(shared_jobs& s, int id, std::vector<std::pair<int, int>>& done, int& unlocked_looks) {
    auto g = co_await s.m.lock();
    for (;;) {
        co_await s.cv.wait(g, [&] {
            if (!s.m.locked() || !g.owns_lock()) ++unlocked_looks;
            return !s.jobs.empty() || s.closing;
        });
        if (s.jobs.empty()) co_return;
        done.emplace_back(id, s.jobs.front());
        s.jobs.pop_front();
        g.unlock();
        co_await coring::yield_now(); // the job's work, without the lock
        g = co_await s.m.lock();
    }
}

} // namespace

TEST_CASE("condition - producers and consumers: every job done once, the predicate always seen under the lock",
          "[sync][condition]") {
    coring::event_loop loop;
    shared_jobs s;
    std::vector<std::pair<int, int>> done;
    int unlocked_looks = 0;
    loop.run([&]() -> task<> {
        std::vector<coring::join_handle<void>> workers;
        for (int id = 0; id < 4; ++id) workers.push_back(coring::spawn(worker(s, id, done, unlocked_looks)));
        for (int j = 0; j < 200; ++j) {
            {
                auto g = co_await s.m.lock();
                s.jobs.push_back(j);
                s.cv.notify_one();
            }
            if (j % 7 == 0) co_await coring::yield_now();
        }
        {
            auto g = co_await s.m.lock();
            s.closing = true;
            s.cv.notify_all();
        }
        for (auto& w : workers) co_await w;
    }());
    REQUIRE(done.size() == 200);
    std::vector<int> seen(200, 0);
    for (auto& [id, j] : done) ++seen[j];
    CHECK(std::count(seen.begin(), seen.end(), 1) == 200);
    CHECK(unlocked_looks == 0);
}

TEST_CASE("condition - wait releases the mutex while it waits and holds it again when it returns",
          "[sync][condition]") {
    coring::event_loop loop;
    coring::mutex m;
    coring::condition cv;
    std::vector<std::string> log;
    loop.run([&]() -> task<> {
        auto waiter =
            coring::spawn([](coring::mutex& m, coring::condition& cv, std::vector<std::string>& log) -> task<> {
                auto g = co_await m.lock();
                log.push_back("waiting");
                co_await cv.wait(g);
                log.push_back(g.owns_lock() && m.locked() ? "woken with the lock" : "woken without the lock");
            }(m, cv, log));
        co_await settle();
        CHECK_FALSE(m.locked()); // given up by the waiter
        {
            auto g = co_await m.lock();
            cv.notify_one();
            co_await settle(); // the waiter cannot return while the notifier holds the lock
            CHECK(log.size() == 1);
        }
        co_await waiter;
        CHECK_FALSE(m.locked());
    }());
    CHECK(log == std::vector<std::string>{"waiting", "woken with the lock"});
}

TEST_CASE("condition - notify wakes in wait order - notify(n) wakes n - nobody waiting is a no-op",
          "[sync][condition]") {
    coring::event_loop loop;
    coring::mutex m;
    coring::condition cv;
    std::vector<int> order;
    loop.run([&]() -> task<> {
        cv.notify_all(); // nobody waits: nothing happens, nothing is remembered
        auto w = [](coring::mutex& m, coring::condition& cv, std::vector<int>& order, int id) -> task<> {
            auto g = co_await m.lock();
            co_await cv.wait(g);
            order.push_back(id);
        };
        std::vector<coring::join_handle<void>> hs;
        for (int id = 0; id < 5; ++id) hs.push_back(coring::spawn(w(m, cv, order, id)));
        co_await settle();
        cv.notify(2);
        co_await settle();
        CHECK(order == std::vector<int>{0, 1});
        cv.notify_one();
        co_await settle();
        CHECK(order == std::vector<int>{0, 1, 2});
        cv.notify_all();
        for (auto& h : hs) co_await h;
    }());
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("condition - a waiter cancelled before it is notified reacquires the lock, then throws",
          "[sync][condition]") {
    coring::event_loop loop;
    coring::mutex m;
    coring::condition cv;
    std::string outcome;
    loop.run([&]() -> task<> {
        auto h = coring::spawn([](coring::mutex& m, coring::condition& cv, std::string& outcome) -> task<> {
            auto g = co_await m.lock();
            try {
                co_await cv.wait(g);
                outcome = "returned";
            } catch (const coring::cancelled_error&) {
                outcome = g.owns_lock() && m.locked() ? "cancelled holding the lock" : "cancelled without the lock";
            }
        }(m, cv, outcome));
        co_await settle();
        auto g = co_await m.lock(); // the waiter cannot get the lock back yet
        h.cancel();
        co_await settle();
        CHECK(outcome.empty());
        g.unlock();
        co_await settle();
        CHECK(outcome == "cancelled holding the lock");
        CHECK_FALSE(m.locked()); // the waiter's guard let go when its task ended
        cv.notify_all();         // the cancelled waiter left the condition: nothing to wake
    }());
    CHECK(outcome == "cancelled holding the lock");
}

TEST_CASE("condition - a waiter notified before the cancellation returns normally and meets it at its next wait",
          "[sync][condition]") {
    coring::event_loop loop;
    coring::mutex m;
    coring::condition cv;
    std::vector<std::string> log;
    loop.run([&]() -> task<> {
        auto h = coring::spawn([](coring::mutex& m, coring::condition& cv, std::vector<std::string>& log) -> task<> {
            auto g = co_await m.lock();
            co_await cv.wait(g);
            log.push_back("notified");
            g.unlock();
            try {
                co_await coring::sleep(10s);
            } catch (const coring::cancelled_error&) {
                log.push_back("cancelled at the next wait");
            }
        }(m, cv, log));
        co_await settle();
        {
            auto g = co_await m.lock();
            cv.notify_one(); // the waiter moves to the mutex's queue
            h.cancel();      // ... and stays there: it must get the lock
        }
        co_await h;
    }());
    CHECK(log == std::vector<std::string>{"notified", "cancelled at the next wait"});
}

TEST_CASE("condition - an already cancelled task does not wait and keeps the lock - an empty guard is refused",
          "[sync][condition]") {
    coring::event_loop loop;
    coring::mutex m;
    coring::condition cv;
    std::vector<std::string> log;
    loop.run([&]() -> task<> {
        auto h = coring::spawn([](coring::mutex& m, coring::condition& cv, std::vector<std::string>& log) -> task<> {
            auto g = co_await m.lock();
            try {
                co_await coring::sleep(10s);
            } catch (const coring::cancelled_error&) {}
            try {
                co_await cv.wait(g);
            } catch (const coring::cancelled_error&) {
                log.push_back(g.owns_lock() ? "cancelled, still locked" : "cancelled, lock lost");
            }
            coring::mutex::guard empty;
            try {
                co_await cv.wait(empty);
            } catch (const std::logic_error&) {
                log.push_back("empty guard refused");
            }
        }(m, cv, log));
        co_await settle();
        h.cancel();
        co_await h;
        CHECK_FALSE(m.locked());
    }());
    CHECK(log == std::vector<std::string>{"cancelled, still locked", "empty guard refused"});
}

TEST_CASE("condition - cancelled with the mutex free it takes the mutex at once and notify works without the lock",
          "[sync][condition]") {
    coring::event_loop loop;
    coring::mutex m;
    coring::condition cv;
    std::vector<std::string> log;
    loop.run([&]() -> task<> {
        auto w = [](coring::mutex& m, coring::condition& cv, std::vector<std::string>& log) -> task<> {
            auto g = co_await m.lock();
            try {
                co_await cv.wait(g);
                log.push_back(g.owns_lock() && m.locked() ? "notified, locked" : "notified, unlocked");
            } catch (const coring::cancelled_error&) {
                log.push_back(g.owns_lock() && m.locked() ? "cancelled, locked" : "cancelled, unlocked");
            }
        };
        auto a = coring::spawn(w(m, cv, log));
        co_await settle();
        a.cancel(); // mutex free: requeue takes it directly
        co_await a;
        CHECK_FALSE(m.locked());
        auto b = coring::spawn(w(m, cv, log));
        co_await settle();
        cv.notify_one(); // without holding the lock
        co_await b;
        CHECK_FALSE(m.locked());
    }());
    CHECK(log == std::vector<std::string>{"cancelled, locked", "notified, locked"});
}

TEST_CASE("condition - a timeout around a predicate wait and waiters on two mutexes", "[sync][condition]") {
    coring::event_loop loop;
    coring::mutex m1, m2;
    coring::condition cv;
    std::vector<std::string> log;
    loop.run([&]() -> task<> {
        bool ready = false;
        auto w = [](coring::mutex& m, coring::condition& cv, bool& ready, std::vector<std::string>& log,
                    std::string name) -> task<> {
            auto g = co_await m.lock();
            try {
                co_await coring::timeout(20ms, cv.wait(g, [&ready] { return ready; }));
                log.push_back(name + " ready");
            } catch (const coring::timeout_error&) {
                log.push_back(name + (g.owns_lock() ? " timed out, locked" : " timed out, unlocked"));
            }
        };
        auto a = coring::spawn(w(m1, cv, ready, log, "a"));
        auto b = coring::spawn(w(m2, cv, ready, log, "b"));
        co_await settle();
        CHECK_FALSE(m1.locked());
        CHECK_FALSE(m2.locked());
        cv.notify_all(); // predicate false: both wait again
        co_await settle();
        co_await a;
        {
            auto g2 = co_await m2.lock(); // b cannot take m2 back while this holds it
            co_await coring::sleep(30ms);
            CHECK(m2.locked());
        }
        co_await b;
        CHECK_FALSE(m1.locked());
        CHECK_FALSE(m2.locked());
    }());
    CHECK(log == std::vector<std::string>{"a timed out, locked", "b timed out, locked"});
}

TEST_CASE(
    "condition - a notified waiter orphaned by its mutex destroyed under it ends when cancelled, without the lock",
    "[sync][condition]") {
    // A misuse (the mutex goes while a task queues for it), which must end in an exception, not a hang.
    bool cancelled = false;
    bool owns = true;
    coring::run([](bool& cancelled, bool& owns) -> task<> {
        auto m = std::make_unique<coring::mutex>();
        coring::condition cv;
        auto waiter = coring::spawn([](coring::mutex& m, coring::condition& cv, bool& cancelled, bool& owns) -> task<> {
            auto g = co_await m.lock();
            try {
                co_await cv.wait(g);
            } catch (const coring::cancelled_error&) {
                cancelled = true;
            }
            owns = g.owns_lock();
            (void)g.release(); // its mutex is gone: nothing to unlock
        }(*m, cv, cancelled, owns));
        co_await coring::yield_now(); // the waiter locks, then waits on cv, which frees the mutex
        auto mine = co_await m->lock();
        cv.notify_one();      // the waiter moves into the mutex's queue (wait morphing)
        (void)mine.release(); // forget the lock without unlocking,
        m.reset();            // and destroy the mutex the waiter queues for
        waiter.cancel();
        co_await coring::timeout(5s, std::move(waiter));
    }(cancelled, owns));
    CHECK(cancelled);
    CHECK_FALSE(owns);
}

} // namespace test_condition
