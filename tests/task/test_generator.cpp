#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/task/generator.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_generator {

using namespace std::chrono_literals;
using coring::task;

namespace {

coring::generator<int> counter(int n, std::chrono::milliseconds pause) {
    for (int i = 0; i < n; ++i) {
        co_await coring::sleep(pause);
        co_yield i;
    }
}

/// Records its cleanup, to see when the frame goes.
struct cleanup_log {
    std::vector<std::string>* log;
    ~cleanup_log() { log->push_back("cleanup"); }
};

coring::generator<int> logged(std::vector<std::string>& log) {
    cleanup_log c{&log};
    log.push_back("started");
    co_yield 1;
    log.push_back("after 1");
    co_yield 2;
    log.push_back("after 2");
}

coring::generator<std::string> throws_after(int n) {
    for (int i = 0; i < n; ++i) co_yield std::to_string(i);
    co_await coring::yield_now();
    throw std::runtime_error("generator failed");
}

} // namespace

TEST_CASE("generator - values come one per next() with awaits between, then nullopt", "[task][generator]") {
    std::vector<int> got;
    bool ended = false;
    coring::run([](std::vector<int>& got, bool& ended) -> task<> {
        auto g = counter(4, 2ms);
        for (;;) {
            std::optional<int> v = co_await g.next();
            if (!v) break;
            got.push_back(*v);
        }
        ended = g.done();
        std::optional<int> again = co_await g.next();
        CHECK_FALSE(again.has_value());
    }(got, ended));
    CHECK(got == std::vector<int>{0, 1, 2, 3});
    CHECK(ended);
}

TEST_CASE("generator - lazy, and the body runs only inside next()", "[task][generator]") {
    std::vector<std::string> log;
    coring::run([](std::vector<std::string>& log) -> task<> {
        auto g = logged(log);
        co_await coring::yield_now();
        CHECK(log.empty());
        std::optional<int> a = co_await g.next();
        CHECK(a == 1);
        CHECK(log == std::vector<std::string>{"started"});
        std::optional<int> b = co_await g.next();
        CHECK(b == 2);
        std::optional<int> c = co_await g.next();
        CHECK_FALSE(c);
        CHECK(log == std::vector<std::string>{"started", "after 1", "after 2", "cleanup"});
    }(log));
}

TEST_CASE("generator - destroying an unfinished generator runs its cleanup at the co_yield", "[task][generator]") {
    std::vector<std::string> log;
    coring::run([](std::vector<std::string>& log) -> task<> {
        {
            auto g = logged(log);
            std::optional<int> a = co_await g.next();
            CHECK(a == 1);
        }
        CHECK(log == std::vector<std::string>{"started", "cleanup"});
        { auto never_started = logged(log); }
        CHECK(log.size() == 2); // a generator that never ran has nothing to clean up
    }(log));
}

TEST_CASE("generator - an exception comes out of next(), after which it is finished", "[task][generator]") {
    std::vector<std::string> log;
    coring::run([](std::vector<std::string>& log) -> task<> {
        auto g = throws_after(2);
        for (int k = 0; k < 4; ++k) {
            try {
                std::optional<std::string> v = co_await g.next();
                log.push_back(v ? *v : "end");
            } catch (const std::runtime_error& e) {
                log.push_back(e.what());
            }
        }
        CHECK(g.done());
    }(log));
    CHECK(log == std::vector<std::string>{"0", "1", "generator failed", "end"});
}

TEST_CASE("generator - cancelling the consumer cancels what the generator awaits", "[task][generator]") {
    std::string outcome;
    coring::run([](std::string& outcome) -> task<> {
        auto consumer = coring::spawn([](std::string& outcome) -> task<> {
            auto g = counter(3, 10s);
            try {
                (void)co_await g.next();
                outcome = "value";
            } catch (const coring::cancelled_error&) {
                outcome = g.done() ? "cancelled, generator finished" : "cancelled, generator alive";
            }
        }(outcome));
        co_await coring::sleep(5ms);
        consumer.cancel();
        co_await consumer;
        bool timed_out = false;
        auto g = counter(3, 10s);
        try {
            (void)co_await coring::timeout(5ms, g.next());
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        CHECK(timed_out);
        CHECK(g.done());
    }(outcome));
    CHECK(outcome == "cancelled, generator finished");
}

TEST_CASE("generator - for_each, move-only values, and misuse", "[task][generator]") {
    int sum = 0;
    coring::run([](int& sum) -> task<> {
        co_await counter(5, 0ms).for_each([&sum](int v) { sum += v; });
        auto ptrs = [](int n) -> coring::generator<std::unique_ptr<int>> {
            for (int i = 1; i <= n; ++i) co_yield std::make_unique<int>(i);
        }(3);
        co_await ptrs.for_each([&sum](std::unique_ptr<int> p) -> task<> {
            co_await coring::yield_now();
            sum += *p * 100;
        });
        coring::generator<int> empty;
        bool refused = false;
        try {
            (void)co_await empty.next();
        } catch (const std::logic_error&) {
            refused = true;
        }
        CHECK(refused);
    }(sum));
    CHECK(sum == 10 + 600);
}

} // namespace test_generator
