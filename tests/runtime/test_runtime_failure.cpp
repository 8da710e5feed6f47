#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>

namespace test_runtime_failure {

using namespace std::chrono_literals;
using coring::task;

TEST_CASE("runtime failure - one loop's task throwing stops the others and run rethrows it", "[runtime]") {
    std::atomic<int> cancelled{0};
    coring_test::stopwatch sw;
    std::string what;
    try {
        coring::run_on_cores(3, [&](std::size_t i) -> task<> {
            if (i == 1) {
                co_await coring::sleep(10ms);
                throw std::runtime_error("boom");
            }
            try {
                co_await coring::sleep(1h);
            } catch (const coring::cancelled_error&) {
                cancelled.fetch_add(1);
                throw;
            }
        });
    } catch (const std::runtime_error& e) {
        what = e.what();
    }
    CHECK(what == "boom");
    CHECK(cancelled.load() == 2);
    CHECK(sw.seconds() < 5.0);
}

TEST_CASE("runtime failure - the first failure wins and cancellations are not failures", "[runtime]") {
    std::string what;
    coring_test::stderr_capture err;
    try {
        coring::run_on_cores(2, [](std::size_t i) -> task<> {
            if (i == 0) {
                co_await coring::sleep(5ms);
                throw std::logic_error("first");
            }
            try {
                co_await coring::sleep(1h);
            } catch (const coring::cancelled_error&) {}
            // Thrown during the drain, after the first failure: reported like a detached task's, not rethrown.
            throw std::runtime_error("second");
        });
    } catch (const std::logic_error& e) {
        what = e.what();
    } catch (const std::exception& e) {
        what = std::string("wrong: ") + e.what();
    }
    err.restore();
    CHECK(what == "first");
    CHECK(coring_test::contains(err.text(), "std::runtime_error: second"));
}

TEST_CASE("runtime failure - a loop that cannot be built fails the constructor after joining the others", "[runtime]") {
    const int before = coring_test::open_fds();
    coring::runtime_options o;
    o.loop.entries = 0; // refused by every loop's constructor
    CHECK_THROWS_AS(coring::runtime(2, o), std::invalid_argument);
    CHECK(coring_test::open_fds() == before);
}

TEST_CASE("runtime failure - run is once per runtime", "[runtime]") {
    coring::runtime rt(1);
    rt.run([](std::size_t) -> task<> { co_return; });
    CHECK_THROWS_AS(rt.run([](std::size_t) -> task<> { co_return; }), std::logic_error);
}

} // namespace test_runtime_failure
