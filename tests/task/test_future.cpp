#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/task/future.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace test_future {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::settle;

/// Awaits `f` and records its value under `id`.
task<> take(coring::future<int> f, int id, std::vector<std::pair<int, int>>& got) {
    const int v = co_await f;
    got.emplace_back(id, v);
}

/// What awaiting `f` threw, as text: "cancelled", "broken", "runtime_error: <what>", "logic_error: <what>", or
/// "value <v>".
task<std::string> outcome_of(coring::future<int> f) {
    try {
        const int v = co_await f;
        co_return "value " + std::to_string(v);
    } catch (const coring::cancelled_error&) {
        co_return "cancelled";
    } catch (const coring::broken_promise&) {
        co_return "broken";
    } catch (const std::runtime_error& e) {
        co_return std::string("runtime_error: ") + e.what();
    } catch (const std::logic_error& e) {
        co_return std::string("logic_error: ") + e.what();
    }
}

/// Awaits `f`, records that it returned, then sleeps (where a cancellation that came after the wake-up lands).
task<> woken_then_sleeps(coring::future<int> f, int& value) {
    value = co_await f;
    co_await coring::sleep(10s);
}

/// A callback API, as a C library would have: calls `done` with a result after `delay`, from the loop.
template <class F>
void call_later_with(std::chrono::milliseconds delay, int v, F done) {
    coring::spawn([](std::chrono::milliseconds d, int v, F done) -> task<> {
        co_await coring::sleep(d);
        done(v);
    }(delay, v, std::move(done)))
        .detach();
}

} // namespace

TEST_CASE("future - a value set before the await is returned at once and result() reads it", "[task][future]") {
    coring::run([]() -> task<> {
        coring::promise<int> p;
        coring::future<int> f = p.get_future();
        CHECK(f.valid());
        CHECK_FALSE(f.done());
        CHECK_FALSE(p.is_set());
        p.set_value(7);
        CHECK(p.is_set());
        CHECK(f.done());
        CHECK(f.result() == 7);
        CHECK(f.exception() == nullptr);
        const int v = co_await f;
        CHECK(v == 7);
        const int again = co_await f; // awaiting a done future any number of times
        CHECK(again == 7);
    }());
}

TEST_CASE("future - set_value wakes every waiter in the order they came and none inline", "[task][future]") {
    coring::run([]() -> task<> {
        coring::promise<int> p;
        std::vector<std::pair<int, int>> got;
        std::vector<coring::join_handle<void>> hs;
        for (int i = 0; i < 5; ++i) hs.push_back(coring::spawn(take(p.get_future(), i, got)));
        co_await settle();
        CHECK(got.empty());
        p.set_value(42);
        CHECK(got.empty()); // queued, not resumed inline
        for (auto& h : hs) co_await h;
        CHECK(got == std::vector<std::pair<int, int>>{{0, 42}, {1, 42}, {2, 42}, {3, 42}, {4, 42}});
    }());
}

TEST_CASE("future - set_exception reaches every waiter with its type and message", "[task][future]") {
    coring::run([]() -> task<> {
        coring::promise<int> p;
        auto a = coring::spawn(outcome_of(p.get_future()));
        auto b = coring::spawn(outcome_of(p.get_future()));
        co_await settle();
        p.set_exception(std::make_exception_ptr(std::runtime_error("lookup failed")));
        const std::string ra = co_await a;
        const std::string rb = co_await b;
        CHECK(ra == "runtime_error: lookup failed");
        CHECK(rb == "runtime_error: lookup failed");
        coring::future<int> f = p.get_future();
        CHECK(f.done());
        CHECK(f.exception() != nullptr);
        CHECK_THROWS_WITH(f.result(), "lookup failed");
    }());
}

TEST_CASE("future - setting a promise twice or with a null exception is a logic_error", "[task][future]") {
    coring::promise<int> p;
    p.set_value(1);
    CHECK_THROWS_AS(p.set_value(2), std::logic_error);
    CHECK_THROWS_AS(p.set_exception(std::make_exception_ptr(std::runtime_error("x"))), std::logic_error);
    CHECK(p.get_future().result() == 1); // the first outcome stays
    coring::promise<int> q;
    CHECK_THROWS_AS(q.set_exception(nullptr), std::logic_error);
    CHECK_FALSE(q.is_set());
    coring::promise<void> v;
    v.set_value();
    CHECK_THROWS_AS(v.set_value(), std::logic_error);
    // Moved-from promises refuse everything.
    coring::promise<int> from;
    coring::promise<int> to(std::move(from));
    CHECK_THROWS_AS(from.get_future(), std::logic_error);
    CHECK_THROWS_AS(from.set_value(3), std::logic_error);
    CHECK_FALSE(from.is_set());
}

TEST_CASE("future - a promise destroyed unset makes its waiters and later awaits throw broken_promise",
          "[task][future]") {
    coring::run([]() -> task<> {
        coring::future<int> kept;
        std::string waited;
        {
            coring::promise<int> p;
            kept = p.get_future();
            auto w = coring::spawn(outcome_of(p.get_future()));
            co_await settle();
            { coring::promise<int> gone(std::move(p)); } // destroyed unset
            waited = co_await w;
        }
        CHECK(waited == "broken");
        CHECK(kept.done());
        CHECK_THROWS_AS(kept.result(), coring::broken_promise);
        const std::string later = co_await outcome_of(kept);
        CHECK(later == "broken");
        // A promise assigned over also counts as destroyed.
        coring::promise<int> a;
        coring::future<int> fa = a.get_future();
        a = coring::promise<int>();
        CHECK_THROWS_AS(fa.result(), coring::broken_promise);
    }());
}

TEST_CASE("future - a cancelled waiter leaves the future intact for the others and for later awaits",
          "[task][future][cancel]") {
    coring::run([]() -> task<> {
        coring::promise<int> p;
        auto a = coring::spawn(outcome_of(p.get_future()));
        auto b = coring::spawn(outcome_of(p.get_future()));
        auto c = coring::spawn(outcome_of(p.get_future()));
        co_await settle();
        b.cancel();
        const std::string rb = co_await b;
        CHECK(rb == "cancelled");
        CHECK_FALSE(p.is_set());
        p.set_value(5);
        const std::string ra = co_await a;
        const std::string rc = co_await c;
        CHECK(ra == "value 5");
        CHECK(rc == "value 5");
        const std::string later = co_await outcome_of(p.get_future());
        CHECK(later == "value 5");
    }());
}

TEST_CASE("future - a waiter cancelled after the value came but before it ran still gets the value",
          "[task][future][cancel]") {
    coring::run([]() -> task<> {
        coring::promise<int> p;
        int value = 0;
        auto w = coring::spawn(woken_then_sleeps(p.get_future(), value));
        co_await settle();
        p.set_value(9);
        w.cancel(); // the wake-up is queued: the grant wins, the cancellation hits the sleep after it
        bool cancelled = false;
        try {
            co_await w;
        } catch (const coring::cancelled_error&) {
            cancelled = true;
        }
        CHECK(cancelled);
        CHECK(value == 9);
    }());
}

TEST_CASE("future - an already cancelled task gets a done future's value and cancelled_error for a pending one",
          "[task][future][cancel]") {
    coring::run([]() -> task<> {
        coring::promise<int> done_p;
        done_p.set_value(3);
        coring::promise<int> pending_p;
        std::string on_done, on_pending;
        auto t = coring::spawn(
            [](coring::future<int> d, coring::future<int> pending, std::string& a, std::string& b) -> task<> {
                try {
                    co_await coring::sleep(10s);
                } catch (const coring::cancelled_error&) {}
                a = co_await outcome_of(d);
                b = co_await outcome_of(pending);
            }(done_p.get_future(), pending_p.get_future(), on_done, on_pending));
        co_await settle();
        t.cancel();
        co_await t;
        CHECK(on_done == "value 3");
        CHECK(on_pending == "cancelled");
        CHECK_FALSE(pending_p.is_set());
    }());
}

TEST_CASE("future - a timeout on a future ends the wait and the future still completes", "[task][future][cancel]") {
    coring::run([]() -> task<> {
        coring::promise<int> p;
        coring::future<int> f = p.get_future();
        bool timed_out = false;
        try {
            (void)co_await coring::timeout(20ms, f);
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        CHECK(timed_out);
        CHECK_FALSE(f.done());
        p.set_value(11);
        const int v = co_await f;
        CHECK(v == 11);
    }());
}

TEST_CASE("future - bridges a callback API: the promise moves into the callback", "[task][future]") {
    coring::run([]() -> task<> {
        std::vector<coring::future<int>> fs;
        for (int i = 0; i < 3; ++i) {
            coring::promise<int> p;
            fs.push_back(p.get_future());
            call_later_with(std::chrono::milliseconds(15 - 5 * i), i * 10,
                            [p = std::move(p)](int v) mutable { p.set_value(v); });
        }
        int sum = 0;
        for (auto& f : fs) sum += co_await f;
        CHECK(sum == 30);
    }());
}

TEST_CASE("future - void and move-only values and awaiting a temporary future", "[task][future]") {
    coring::run([]() -> task<> {
        coring::promise<void> pv;
        auto w = coring::spawn([](coring::future<void> f) -> task<> { co_await f; }(pv.get_future()));
        co_await settle();
        CHECK_FALSE(w.done());
        pv.set_value();
        co_await w;
        CHECK(pv.get_future().done());

        coring::promise<std::unique_ptr<int>> pu;
        pu.set_value(std::make_unique<int>(8));
        coring::future<std::unique_ptr<int>> kept = pu.get_future();
        CHECK(*kept.result() == 8);
        bool shared_refused = false;
        try {
            (void)co_await pu.get_future(); // `kept` shares the value: it cannot be moved out
        } catch (const std::logic_error&) {
            shared_refused = true;
        }
        CHECK(shared_refused);
        std::unique_ptr<int> taken = co_await std::move(kept); // the last future: the value moves out
        CHECK_FALSE(kept.valid());
        REQUIRE(taken);
        CHECK(*taken == 8);
        CHECK(pu.get_future().result() == nullptr); // what a later future finds: the moved-from value
    }());
}

TEST_CASE("future - awaiting a temporary gives the value itself, which outlives the state", "[task][future]") {
    std::string got;
    coring::run([](std::string& got) -> task<> {
        auto make = []() {
            coring::promise<std::string> p;
            p.set_value(std::string(100, 'x')); // on the heap: a dangling reference would show under ASan
            return p.get_future();              // the promise goes here
        };
        const std::string& v = co_await make(); // bound to the returned value, not into the freed state
        got = v;
        coring::promise<std::string> p2;
        coring::future<std::string> f2 = p2.get_future();
        p2.set_value("copy");
        std::string c = co_await std::move(f2); // another holder (the promise): copied
        CHECK(c == "copy");
        CHECK(p2.get_future().result() == "copy");
    }(got));
    CHECK(got == std::string(100, 'x'));
}

TEST_CASE("future - a promise set on another thread while tasks wait is refused", "[task][future]") {
    std::string error;
    int value = 0;
    coring::run([](std::string& error, int& value) -> task<> {
        coring::promise<int> p;
        auto w = coring::spawn(
            [](coring::future<int> f, int& value) -> task<> { value = co_await f; }(p.get_future(), value));
        co_await settle();
        std::thread other([&] {
            try {
                p.set_value(1);
            } catch (const std::logic_error& e) {
                error = e.what();
            }
        });
        other.join();
        CHECK_FALSE(p.is_set());
        p.set_value(2); // on the loop's thread
        co_await w;
    }(error, value));
    CHECK(error.find("call_soon_threadsafe") != std::string::npos);
    CHECK(value == 2);
}

TEST_CASE("future - the value lives as long as a future or the promise and is destroyed once", "[task][future]") {
    using coring_test::lifetime;
    const int before = lifetime::alive;
    coring::run([](int before) -> task<> {
        coring::future<lifetime> f;
        {
            coring::promise<lifetime> p;
            f = p.get_future();
            p.set_value(4);
        }
        CHECK(lifetime::alive == before + 1);
        const lifetime& v = co_await f;
        CHECK(v.value == 4);
        coring::future<lifetime> copy = f;
        f = coring::future<lifetime>();
        CHECK(lifetime::alive == before + 1);
        CHECK(copy.result().value == 4);
    }(before));
    CHECK(lifetime::alive == before);
}

TEST_CASE("future - a future with no state refuses result and co_await", "[task][future]") {
    coring::future<int> f;
    CHECK_FALSE(f.valid());
    CHECK_FALSE(f.done());
    CHECK(f.exception() == nullptr);
    CHECK_THROWS_AS(f.result(), std::logic_error);
    coring::promise<int> p;
    try {
        (void)p.get_future().result();
        FAIL("result() of a pending future returned");
    } catch (const coring::broken_promise&) {
        FAIL("a pending future is not broken");
    } catch (const std::logic_error& e) {
        CHECK(std::string(e.what()).find("before the future is done") != std::string::npos);
    }
    coring::run([](coring::future<int> empty) -> task<> {
        const std::string r = co_await outcome_of(empty);
        CHECK(r.rfind("logic_error", 0) == 0);
    }(coring::future<int>()));
}

} // namespace test_future
