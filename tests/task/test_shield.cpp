#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <span>
#include <string>

namespace test_shield {

using namespace std::chrono_literals;
using coring::task;

namespace {

using coring_test::make_socket_pair;
using coring_test::socket_pair;

} // namespace

TEST_CASE("shield - a cancelled task finishes its cleanup, then its next wait throws", "[shield][cancel]") {
    coring::run([]() -> task<> {
        int cleaned = 0;
        bool next_wait_threw = false;
        auto h = coring::spawn([](int& c, bool& threw) -> task<> {
            bool cancelled = false;
            try {
                co_await coring::sleep(10s);
            } catch (const coring::cancelled_error&) {
                cancelled = true;
            }
            if (!cancelled) co_return;
            // Cleanup that must wait: it runs to the end although the task is cancelled.
            co_await coring::shield(coring::sleep(5ms));
            c = co_await coring::shield([]() -> task<int> {
                co_await coring::sleep(1ms);
                co_return 7;
            }());
            try {
                co_await coring::sleep(1ms);
            } catch (const coring::cancelled_error&) {
                threw = true;
                throw;
            }
        }(cleaned, next_wait_threw));
        co_await coring::sleep(2ms);
        h.cancel();
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);
        CHECK(cleaned == 7);
        CHECK(next_wait_threw);
    }());
}

TEST_CASE("shield - cancelling the caller while it waits does not reach the shielded awaitable", "[shield][cancel]") {
    coring::run([]() -> task<> {
        bool inner_done = false;
        auto h = coring::spawn([](bool& d) -> task<> {
            co_await coring::shield([](bool& dd) -> task<> {
                co_await coring::sleep(20ms);
                dd = true;
            }(d));
        }(inner_done));
        co_await coring::sleep(2ms);
        h.cancel();
        co_await h; // the shielded work completed, and nothing after it waited: no cancelled_error
        CHECK(inner_done);
    }());
}

TEST_CASE("shield - of an operation, returns its result", "[shield]") {
    coring::run([]() -> task<> {
        // An operation: a read of bytes already sent.
        socket_pair p = make_socket_pair();
        REQUIRE(::write(p.w.native_handle(), "op", 2) == 2);
        char buf[4] = {};
        const std::size_t r = co_await coring::shield(p.r.read(std::span(buf)));
        CHECK(r == 2);
        CHECK(std::string(buf, 2) == "op");
        auto t = []() -> task<int> { co_return 4; }();
        const int v = co_await coring::shield(t); // lvalue: awaited by reference
        CHECK(v == 4);
    }());
}

} // namespace test_shield
