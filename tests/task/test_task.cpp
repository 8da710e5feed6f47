#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_task {

using coring::task;
using coring_test::lifetime;

namespace {

task<int> value(int v) { co_return v; }
task<> nothing() { co_return; }
task<std::unique_ptr<int>> boxed(int v) { co_return std::make_unique<int>(v); }
task<std::string> text(std::string s) { co_return s + "!"; }
task<int> thrower() {
    throw std::runtime_error("boom");
    co_return 0;
}

int global = 7;
task<int&> reference() { co_return global; }

struct point {
    int x, y;
};
task<point> braced() { co_return {1, 2}; }

} // namespace

TEST_CASE("task - returns values, void, move-only results and references", "[task]") {
    coring::run([]() -> task<> {
        // Results are bound to locals before checking: Catch's CHECK repeats its expression in a loop condition, and
        // a co_await in a condition is a known GCC 12 trap (PR 104050, PR 106188).
        const int v = co_await value(41);
        CHECK(v == 41);
        co_await nothing();
        std::unique_ptr<int> p = co_await boxed(5);
        REQUIRE(p);
        CHECK(*p == 5);
        const std::string s = co_await text("hi");
        CHECK(s == "hi!");
        int& r = co_await reference();
        CHECK(&r == &global);
        point pt = co_await braced();
        CHECK(pt.x == 1);
        CHECK(pt.y == 2);
    }());
}

TEST_CASE("task - is lazy: nothing runs until it is awaited", "[task]") {
    coring::run([]() -> task<> {
        bool ran = false;
        auto t = [](bool& flag) -> task<> {
            flag = true;
            co_return;
        }(ran);
        CHECK_FALSE(ran);
        co_await t;
        CHECK(ran);
        CHECK(t.done());
    }());
}

TEST_CASE("task - an exception is stored and rethrown in the awaiter", "[task]") {
    coring::run([]() -> task<> {
        bool caught = false;
        try {
            (void)co_await thrower();
        } catch (const std::runtime_error& e) {
            caught = std::string(e.what()) == "boom";
        }
        CHECK(caught);
    }());
    CHECK_THROWS_WITH(coring::run(thrower()), "boom");
}

TEST_CASE("task - destroying a task that never ran frees its frame and arguments", "[task]") {
    lifetime::alive = 0;
    {
        auto t = [](lifetime l) -> task<int> { co_return l.value; }(lifetime(3));
        CHECK(lifetime::alive == 1);
    }
    CHECK(lifetime::alive == 0);
    CHECK(coring::run([](lifetime l) -> task<int> { co_return l.value; }(lifetime(4))) == 4);
    CHECK(lifetime::alive == 0);
}

TEST_CASE("task - awaiting an empty or already awaited task is a logic error", "[task]") {
    coring::run([]() -> task<> {
        task<int> empty;
        CHECK_THROWS_AS(co_await empty, std::logic_error);
        task<int> t = value(1);
        const int first = co_await t;
        CHECK(first == 1);
        CHECK_THROWS_AS(co_await t, std::logic_error);
        task<int> moved = value(2);
        task<int> into = std::move(moved);
        CHECK_FALSE(moved.valid()); // NOLINT(bugprone-use-after-move): checking the moved-from state
        const int second = co_await into;
        CHECK(second == 2);
    }());
}

namespace {

task<long> count_down(long n) {
    long sum = 0;
    for (long i = 0; i < n; ++i) sum += co_await value(1);
    co_return sum;
}

task<long> recurse(long depth) {
    if (depth == 0) co_return 0;
    co_return 1 + co_await recurse(depth - 1);
}

} // namespace

// Symmetric transfer is not a tail call at -O0 (GCC, Clang 14) nor under ASan: without the bounded inline-resume
// depth these overflow the stack (pitfalls H-1, libcoro#273).
TEST_CASE("task - a million sequential awaits of ready tasks do not overflow the stack", "[task][deep]") {
    CHECK(coring::run(count_down(1'000'000)) == 1'000'000);
}

TEST_CASE("task - a chain of 100,000 nested tasks does not overflow the stack", "[task][deep]") {
    CHECK(coring::run(recurse(100'000)) == 100'000);
}

TEST_CASE("task - results are the same when every transfer bounces through the loop", "[task][deep]") {
    // stack_limit 0 forces the trampoline that -O0 builds take on deep stacks, at every optimisation level.
    coring::run([]() -> task<> {
        coring::detail::current_core->stack_limit = 0;
        const long flat = co_await count_down(10'000);
        CHECK(flat == 10'000);
        const long nested = co_await recurse(10'000);
        CHECK(nested == 10'000);
        auto [a, b] = co_await coring::gather(count_down(100), recurse(100));
        CHECK(a + b == 200);
    }());
}

} // namespace test_task
