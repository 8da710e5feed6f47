#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace test_remote {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// Awaits one item posted by another thread: the shape every cross-thread completion (to_thread) has.
struct from_thread : coring::detail::remote_item {
    std::coroutine_handle<> waiter{};
    std::thread worker;
    int value = 0;

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
        waiter = h;
        run = [](coring::detail::remote_item* self) noexcept {
            auto* me = static_cast<from_thread*>(self);
            coring::event_loop::current().remote_end();
            coring::event_loop::current().schedule(me->waiter);
        };
        auto& loop = coring::event_loop::current();
        loop.remote_begin();
        worker = std::thread([this, q = loop.remote()] {
            std::this_thread::sleep_for(5ms);
            value = 7;
            q->post(this);
        });
    }
    int await_resume() {
        worker.join();
        return value;
    }
};

} // namespace

TEST_CASE("event_loop - another thread wakes the loop through its inbox, waiting for it is no deadlock", "[loop]") {
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            coring::event_loop loop(setup.options);
            loop.run([]() -> task<> {
                for (int i = 0; i < 20; ++i) {
                    from_thread f;
                    const int v = co_await f;
                    CHECK(v == 7);
                }
            }());
            CHECK(loop.in_flight() == 0);
        }
    }
}

} // namespace test_remote
