#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace test_gather {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// A connected pair of Unix stream sockets as coring streams (what one writes, the other reads): a read on it is an
/// operation on both backends (IORING_OP_RECV in the kernel on io_uring, parked on its descriptor on epoll), where a
/// raw submit() is io_uring's alone.
struct stream_pair {
    coring::unix_stream r, w;
};
stream_pair make_stream_pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    return {coring::unix_stream(fds[0]), coring::unix_stream(fds[1])};
}

using coring_test::after;
task<> fail_after(std::chrono::milliseconds d) {
    co_await coring::sleep(d);
    throw std::runtime_error("child failed");
}

/// Sleeps for `d`; records whether it finished, was cancelled, and that it got to clean up.
struct probe {
    bool started = false; // reached its sleep
    bool finished = false;
    bool cancelled = false;
    bool cleaned = false;
};
task<int> watched(std::chrono::milliseconds d, probe& p) {
    try {
        p.started = true;
        co_await coring::sleep(d);
        p.finished = true;
    } catch (const coring::cancelled_error&) {
        p.cancelled = true;
        p.cleaned = true;
        throw;
    }
    co_return 1;
}

} // namespace

TEST_CASE("gather - results come in argument order whatever the finishing order", "[gather]") {
    coring::run([]() -> task<> {
        std::vector<int> order;
        coring_test::stopwatch sw;
        auto [a, b, c] =
            co_await coring::gather(after(30ms, 1, &order), after(20ms, 2, &order), after(10ms, 3, &order));
        CHECK(a == 1);
        CHECK(b == 2);
        CHECK(c == 3);
        CHECK(order == std::vector<int>{3, 2, 1});
        CHECK(sw.seconds() < 0.055); // concurrent: about 30 ms, not 60
    }());
}

TEST_CASE("gather - void becomes std::monostate, mixed types work", "[gather]") {
    coring::run([]() -> task<> {
        auto r = co_await coring::gather(coring::sleep(1ms), after(1ms, 7), [](std::string s) -> task<std::string> {
            co_await coring::yield_now();
            co_return s;
        }("x"));
        STATIC_REQUIRE(std::is_same_v<decltype(r), std::tuple<std::monostate, int, std::string>>);
        CHECK(std::get<1>(r) == 7);
        CHECK(std::get<2>(r) == "x");
    }());
}

TEST_CASE("gather - empty inputs complete at once", "[gather]") {
    coring::run([]() -> task<> {
        auto none = co_await coring::gather();
        STATIC_REQUIRE(std::tuple_size_v<decltype(none)> == 0);
        std::vector<task<int>> empty;
        std::vector<int> out = co_await coring::gather(std::move(empty));
        CHECK(out.empty());
        std::vector<task<>> empty_void;
        co_await coring::gather(std::move(empty_void));
    }());
}

TEST_CASE("gather - a vector of tasks yields a vector in order", "[gather]") {
    coring::run([]() -> task<> {
        std::vector<task<int>> ts;
        for (int i = 0; i < 100; ++i) ts.push_back(after(std::chrono::milliseconds(100 - i), i));
        std::vector<int> out = co_await coring::gather(std::move(ts));
        REQUIRE(out.size() == 100);
        for (int i = 0; i < 100; ++i) CHECK(out[static_cast<std::size_t>(i)] == i);

        int count = 0;
        std::vector<task<>> vs;
        for (int i = 0; i < 10; ++i)
            vs.push_back([](int& c) -> task<> {
                co_await coring::yield_now();
                ++c;
            }(count));
        co_await coring::gather(std::move(vs));
        CHECK(count == 10);
    }());
}

TEST_CASE("gather - join handles and other awaitables, by value and by reference", "[gather]") {
    coring::run([]() -> task<> {
        auto h1 = coring::spawn(after(5ms, 1));
        auto h2 = coring::spawn(after(1ms, 2));
        // An operation by value: a read of a byte already sent.
        stream_pair p = make_stream_pair();
        REQUIRE(::write(p.w.native_handle(), "c", 1) == 1);
        char buf[4] = {};
        auto [a, b, c] = co_await coring::gather(h1, h2, p.r.read(std::span(buf)));
        CHECK(a == 1);
        CHECK(b == 2);
        CHECK(c == 1);
        CHECK(buf[0] == 'c');
        CHECK(h1.done());

        std::vector<coring::join_handle<int>> hs;
        for (int i = 0; i < 5; ++i) hs.push_back(coring::spawn(after(1ms, i)));
        std::vector<int> out = co_await coring::gather(std::move(hs));
        CHECK(out == std::vector<int>{0, 1, 2, 3, 4});
    }());
}

TEST_CASE("gather - the first failure cancels the siblings, waits for them, then rethrows", "[gather][cancel]") {
    coring::run([]() -> task<> {
        probe slow, slower;
        coring_test::stopwatch sw;
        bool caught = false;
        try {
            co_await coring::gather(watched(10s, slow), fail_after(5ms), watched(20s, slower));
        } catch (const std::runtime_error& e) {
            caught = std::string(e.what()) == "child failed";
        }
        CHECK(caught);
        CHECK(sw.seconds() < 1.0);
        // No orphan: by the time gather rethrew, both siblings had run their cancellation handlers.
        CHECK(slow.cancelled);
        CHECK(slow.cleaned);
        CHECK(slower.cancelled);
        CHECK_FALSE(slow.finished);
    }());
}

TEST_CASE("gather - a sibling that never reaches a cancellation point runs to its end first", "[gather][cancel]") {
    coring::run([]() -> task<> {
        bool done = false;
        auto busy = [](bool& d) -> task<int> {
            // Never waits on anything cancellable: it simply runs to its end.
            for (int i = 0; i < 1000; ++i) d = (i == 999);
            co_return 3;
        };
        CHECK_THROWS_AS(co_await coring::gather(fail_after(0ms), busy(done)), std::runtime_error);
        CHECK(done);
    }());
}

TEST_CASE("gather - cancelling the caller cancels every child", "[gather][cancel]") {
    coring::run([]() -> task<> {
        probe a, b;
        auto h = coring::spawn(coring::gather(watched(10s, a), watched(10s, b)));
        // Cancelled once both children wait (one cancelled before it ever ran never reaches its handler; under an
        // emulator, 2 ms were not always enough for them to start).
        while (!a.started || !b.started) co_await coring::sleep(1ms);
        h.cancel();
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);
        CHECK(a.cancelled);
        CHECK(b.cancelled);
    }());
}

TEST_CASE("gather - nested gathers cancel all the way down", "[gather][cancel]") {
    coring::run([]() -> task<> {
        probe a, b, c;
        coring_test::stopwatch sw;
        auto inner = [](probe& x, probe& y) -> task<> { co_await coring::gather(watched(10s, x), watched(10s, y)); };
        CHECK_THROWS_AS(co_await coring::gather(inner(a, b), watched(10s, c), fail_after(3ms)), std::runtime_error);
        CHECK(a.cancelled);
        CHECK(b.cancelled);
        CHECK(c.cancelled);
        CHECK(sw.seconds() < 1.0);
    }());
}

TEST_CASE("gather - children are freed when the gather ends", "[gather]") {
    coring_test::lifetime::alive = 0;
    coring::run([]() -> task<> {
        auto child = [](coring_test::lifetime l) -> task<int> {
            co_await coring::yield_now();
            co_return l.value;
        };
        auto [x, y] = co_await coring::gather(child(coring_test::lifetime(1)), child(coring_test::lifetime(2)));
        CHECK(x + y == 3);
        CHECK(coring_test::lifetime::alive == 0);
    }());
}

TEST_CASE("gather - a task that already started is rejected", "[gather]") {
    coring::run([]() -> task<> {
        task<int> t = after(0ms, 1);
        const int v = co_await t;
        CHECK(v == 1);
        CHECK_THROWS_AS(coring::gather(std::move(t)), std::logic_error);
    }());
}

TEST_CASE("gather - children cancelled before they started never run", "[gather][cancel]") {
    coring::run([]() -> task<> {
        int ran = 0;
        auto count = [](int& r) -> task<> {
            ++r;
            co_return;
        };
        auto fail_now = []() -> task<> {
            throw std::runtime_error("first child fails before anyone else runs");
            co_return;
        };
        CHECK_THROWS_AS(co_await coring::gather(fail_now(), count(ran), count(ran)), std::runtime_error);
        CHECK(ran == 0);
    }());
}

// The same for gather, which frees its slots before its tasks' frames.
TEST_CASE("gather - a vector of sleeps", "[task][gather]") {
    int done = 0;
    coring::run([](int& done) -> task<> {
        std::vector<coring::sleep_awaitable> sleeps;
        sleeps.push_back(coring::sleep(1ms));
        sleeps.push_back(coring::sleep(2ms));
        co_await coring::gather(std::move(sleeps));
        ++done;
    }(done));
    CHECK(done == 1);
}

} // namespace test_gather
