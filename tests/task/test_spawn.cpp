#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_spawn {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::make_socket_pair;
using coring_test::socket_pair;

using coring_test::after;
task<> fail_after(std::chrono::milliseconds d) {
    co_await coring::sleep(d);
    throw std::runtime_error("detached failure");
}
task<std::unique_ptr<int>> boxed(int v) {
    co_await coring::yield_now();
    co_return std::make_unique<int>(v);
}

} // namespace

TEST_CASE("spawn - runs concurrently and the handle yields the result", "[spawn]") {
    coring::run([]() -> task<> {
        coring_test::stopwatch sw;
        auto a = coring::spawn(after(50ms, 1));
        auto b = coring::spawn(after(50ms, 2));
        CHECK_FALSE(a.done());
        const int x = co_await a;
        const int y = co_await b;
        CHECK(x + y == 3);
        CHECK(a.done());
        CHECK(sw.seconds() < 0.09); // concurrent, not 100 ms in a row
        // Copyable results can be awaited again through an lvalue handle, and read with result().
        const int again = co_await a;
        CHECK(again == 1);
        CHECK(a.result() == 1);
    }());
}

TEST_CASE("spawn - a move-only result is moved out once", "[spawn]") {
    coring::run([]() -> task<> {
        auto h = coring::spawn(boxed(9));
        std::unique_ptr<int> p = co_await h;
        REQUIRE(p);
        CHECK(*p == 9);
        CHECK_THROWS_AS(co_await h, std::logic_error);
    }());
}

TEST_CASE("spawn - a spawned task starts on the next turn, not inline", "[spawn]") {
    coring::run([]() -> task<> {
        bool ran = false;
        auto h = coring::spawn([](bool& flag) -> task<> {
            flag = true;
            co_return;
        }(ran));
        CHECK_FALSE(ran);
        co_await h;
        CHECK(ran);
    }());
}

TEST_CASE("spawn - an exception reaches the awaiter and is not reported", "[spawn]") {
    coring_test::stderr_capture err;
    coring::run([]() -> task<> {
        auto h = coring::spawn(fail_after(1ms));
        CHECK_THROWS_WITH(co_await h, "detached failure");
    }());
    err.restore();
    CHECK(err.text().empty());
}

TEST_CASE("spawn - a dropped handle detaches, the task runs on and its exception is reported once", "[spawn]") {
    std::vector<std::string> reports;
    coring::loop_options o;
    o.exception_handler = [&](std::exception_ptr e) {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            reports.emplace_back(ex.what());
        }
    };
    int finished = 0;
    coring::event_loop loop(o);
    loop.run([](int& done) -> task<> {
        coring::spawn(fail_after(5ms)); // handle dropped at once
        {
            auto h = coring::spawn([](int& d) -> task<> {
                co_await coring::sleep(5ms);
                ++d;
            }(done));
        }
        co_await coring::sleep(30ms);
    }(finished));
    CHECK(finished == 1);
    REQUIRE(reports.size() == 1);
    CHECK(reports[0] == "detached failure");
    CHECK(loop.task_count() == 0);
}

TEST_CASE("spawn - the default report is one line on stderr naming the task and the exception", "[spawn]") {
    coring_test::stderr_capture err;
    const unsigned line = __LINE__ + 2;
    coring::run([]() -> task<> {
        coring::spawn(fail_after(1ms));
        co_await coring::sleep(20ms);
    }());
    err.restore();
    const std::string text = err.text();
    INFO(text);
    // It names the task: its id (the main task is #1) and where it was spawned.
    const std::string head =
        "coring: task #2 (spawned at " + std::string(__FILE__) + ":" + std::to_string(line) + " in ";
    const std::string tail = ") ended with an exception: std::runtime_error: detached failure\n";
    CHECK(text.rfind(head, 0) == 0);
    REQUIRE(text.size() > tail.size());
    CHECK(text.substr(text.size() - tail.size()) == tail);
    CHECK(std::count(text.begin(), text.end(), '\n') == 1);
}

TEST_CASE("spawn - a finished task's exception nobody looked at is reported when the handle is dropped", "[spawn]") {
    coring_test::stderr_capture err;
    coring::run([]() -> task<> {
        auto h = coring::spawn(fail_after(1ms));
        co_await coring::sleep(20ms);
        CHECK(h.done());
    }());
    err.restore();
    CHECK(err.text().find("detached failure") != std::string::npos);
}

TEST_CASE("spawn - cancel() delivers cancelled_error where the task waits, it is not reported", "[spawn][cancel]") {
    coring_test::stderr_capture err;
    coring::run([]() -> task<> {
        coring_test::stopwatch sw;
        auto h = coring::spawn(after(10s, 1));
        co_await coring::sleep(5ms);
        CHECK(h.cancel());
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);
        CHECK(sw.seconds() < 1.0);
        CHECK_FALSE(h.cancel()); // already finished
        auto detached = coring::spawn(after(10s, 2));
        detached.cancel();
    }());
    err.restore();
    CHECK(err.text().empty());
}

TEST_CASE("spawn - cancellation is level-triggered: a task that catches it cannot wait again", "[spawn][cancel]") {
    coring::run([]() -> task<> {
        int stage = 0;
        auto h = coring::spawn([](int& s) -> task<> {
            try {
                co_await coring::sleep(10s);
            } catch (const coring::cancelled_error&) {
                s = 1;
            }
            co_await coring::sleep(10s); // throws again at once
            s = 2;
        }(stage));
        co_await coring::yield_now();
        h.cancel();
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);
        CHECK(stage == 1);
    }());
}

TEST_CASE("spawn - cancelling a task that awaits another task cancels that one too", "[spawn][cancel]") {
    coring::run([]() -> task<> {
        auto inner = coring::spawn(after(10s, 1));
        auto outer = coring::spawn([](coring::join_handle<int>& in) -> task<int> { co_return co_await in; }(inner));
        co_await coring::sleep(2ms);
        outer.cancel();
        CHECK_THROWS_AS(co_await outer, coring::cancelled_error);
        CHECK(inner.done());
        CHECK_THROWS_AS(co_await inner, coring::cancelled_error);
    }());
}

TEST_CASE("spawn - a handle can be awaited by one task at a time", "[spawn]") {
    coring::run([]() -> task<> {
        auto h = coring::spawn(after(20ms, 1));
        auto first = coring::spawn([](coring::join_handle<int>& t) -> task<int> { co_return co_await t; }(h));
        co_await coring::yield_now();
        co_await coring::yield_now();
        CHECK_THROWS_AS(co_await h, std::logic_error);
        const int v = co_await first;
        CHECK(v == 1);
    }());
}

TEST_CASE("spawn - accepts any awaitable, not only tasks", "[spawn]") {
    coring::run([]() -> task<> {
        coring_test::stopwatch sw;
        auto h = coring::spawn(coring::sleep(20ms));
        co_await h;
        CHECK(sw.seconds() >= 0.02);
        // An operation: a read of a byte already sent.
        socket_pair p = make_socket_pair();
        REQUIRE(::write(p.w.native_handle(), "n", 1) == 1);
        char buf[4] = {};
        auto n = coring::spawn(p.r.read(std::span(buf)));
        const std::size_t res = co_await n;
        CHECK(res == 1);
        CHECK(buf[0] == 'n');
    }());
}

TEST_CASE("spawn - outside an event loop is a logic error", "[spawn]") {
    CHECK_THROWS_AS(coring::spawn(after(1ms, 1)), std::logic_error);
}

TEST_CASE("spawn - spawning an empty task is a logic error", "[spawn]") {
    coring::run([]() -> task<> {
        task<int> empty;
        CHECK_THROWS_AS(coring::spawn(std::move(empty)), std::logic_error);
        co_return;
    }());
}

TEST_CASE("spawn - a handle dropped while another task awaits it frees the task after the join", "[spawn]") {
    coring_test::lifetime::alive = 0;
    coring::run([]() -> task<> {
        auto owner = std::make_unique<coring::join_handle<int>>(coring::spawn([](coring_test::lifetime l) -> task<int> {
            co_await coring::sleep(10ms);
            co_return l.value;
        }(coring_test::lifetime(5))));
        auto joiner = coring::spawn([](coring::join_handle<int>& t) -> task<int> { co_return co_await t; }(*owner));
        co_await coring::yield_now();
        co_await coring::yield_now();
        owner.reset(); // the joiner holds the last reference now
        const int v = co_await joiner;
        CHECK(v == 5);
    }());
    CHECK(coring_test::lifetime::alive == 0);
}

// Regression: when the joiner of a finished task was queued rather than resumed (a bounced transfer), dropping the
// handle in that window reported the exception as unobserved and freed the frame the joiner was about to read.
TEST_CASE("spawn - dropping a handle while its joiner is queued to read the result frees nothing early", "[spawn]") {
    coring_test::stderr_capture err;
    coring::run([]() -> task<> {
        coring::detail::current_core->stack_limit = 0; // every symmetric transfer bounces through the ready queue
        auto holder = std::make_unique<coring::join_handle<int>>(coring::spawn([]() -> task<int> {
            co_await coring::yield_now();
            throw std::runtime_error("seen by the joiner");
        }()));
        bool joined = false;
        auto joiner = coring::spawn([](coring::join_handle<int>& h, bool& j) -> task<> {
            CHECK_THROWS_WITH(co_await h, "seen by the joiner");
            j = true;
        }(*holder, joined));
        // A supervisor that drops handles of finished tasks, checking on every turn.
        while (!holder->done()) co_await coring::yield_now();
        CHECK_FALSE(joined); // the window: finished, joiner not resumed yet
        holder.reset();
        co_await joiner;
        CHECK(joined);
    }());
    err.restore();
    CHECK(err.text().empty()); // the joiner saw the exception: nothing to report
}

TEST_CASE("spawn - a task cancelled before it started never runs its body", "[spawn][cancel]") {
    coring::run([]() -> task<> {
        int ran = 0;
        auto h = coring::spawn([](int& r) -> task<int> {
            ++r;
            co_return 42;
        }(ran));
        CHECK(h.cancel());
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);
        CHECK(ran == 0);
    }());
}

TEST_CASE("spawn - a task that was already cancelled gets cancelled_error from a join at once, and leaves the other "
          "task alone",
          "[spawn][cancel]") {
    coring::run([]() -> task<> {
        auto shared = coring::spawn(after(30ms, 5));
        auto finished = coring::spawn(after(0ms, 6));
        co_await coring::sleep(5ms);
        int got = 0;
        auto waiter = coring::spawn([](coring::join_handle<int>& s, coring::join_handle<int>& f, int& g) -> task<> {
            try {
                co_await coring::sleep(10s);
            } catch (const coring::cancelled_error&) {}
            g = co_await f;   // finished: no suspension, the result is returned
            (void)co_await s; // would suspend: throws at once
            g = -1;
        }(shared, finished, got));
        co_await coring::yield_now();
        waiter.cancel();
        CHECK_THROWS_AS(co_await waiter, coring::cancelled_error);
        CHECK(got == 6);
        CHECK_FALSE(shared.done());
        const int v = co_await shared; // not cancelled by the waiter
        CHECK(v == 5);
    }());
}

// Regression: a second await on a finished handle while the first joiner was queued cleared the first one's claim,
// and dropping the handle then freed the frame under it.
TEST_CASE("spawn - a second await while another task's join is pending is a logic error, not a use-after-free",
          "[spawn]") {
    coring::run([]() -> task<> {
        coring::detail::current_core->stack_limit = 0; // the final transfer to the joiner bounces: the window opens
        auto holder = std::make_unique<coring::join_handle<int>>(coring::spawn([]() -> task<int> {
            co_await coring::yield_now();
            co_return 5;
        }()));
        int got = 0;
        auto joiner =
            coring::spawn([](coring::join_handle<int>& h, int& g) -> task<> { g = co_await h; }(*holder, got));
        while (!holder->done()) co_await coring::yield_now();
        CHECK_THROWS_AS(co_await *holder, std::logic_error);
        holder.reset();
        co_await joiner;
        CHECK(got == 5);
    }());
}

} // namespace test_spawn
