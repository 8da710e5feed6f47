#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <chrono>
#include <coroutine>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace test_sharing_rules {

using namespace std::chrono_literals;
using coring::task;

#if CORING_CHECKS

TEST_CASE("sharing rules - schedule and spawn from a thread other than the loop's throw logic_error",
          "[loop][sharing]") {
    coring::event_loop loop;
    std::string schedule_error, spawn_error;
    std::thread other([&] {
        try {
            loop.schedule(std::noop_coroutine());
        } catch (const std::logic_error& e) {
            schedule_error = e.what();
        }
        try {
            auto h = loop.spawn([]() -> task<> { co_return; }());
        } catch (const std::logic_error& e) {
            spawn_error = e.what();
        }
    });
    other.join();
    CHECK(schedule_error.find("event_loop::schedule from a thread other than the loop's own") != std::string::npos);
    CHECK(schedule_error.find("run_on/spawn_on") != std::string::npos);
    CHECK(spawn_error.find("event_loop::spawn from a thread other than the loop's own") != std::string::npos);
    CHECK(loop.task_count() == 0);
}

TEST_CASE("sharing rules - a queue waited on from two loops at once throws logic_error on the second",
          "[loop][sharing]") {
    coring::event_loop loop;
    coring::queue<int> q;
    std::string error;
    loop.run([](coring::queue<int>* qp, std::string* err) -> task<> {
        auto waiting = coring::spawn([](coring::queue<int>* q2) -> task<int> { co_return co_await q2->pop(); }(qp));
        co_await coring::yield_now(); // the spawned task now waits in q's list
        // Another loop on another thread waits on the same queue meanwhile. This loop is blocked in join(), so the
        // two threads never touch the queue at the same time (the thread start and join order them).
        std::thread other([qp, err] {
            coring::event_loop l2;
            try {
                l2.run([](coring::queue<int>* q3) -> task<> { (void)co_await q3->pop(); }(qp));
            } catch (const std::logic_error& e) {
                *err = e.what();
            }
        });
        other.join();
        waiting.cancel();
        bool cancelled = false;
        try {
            (void)co_await waiting;
        } catch (const coring::cancelled_error&) {
            cancelled = true;
        }
        CHECK(cancelled);
    }(&q, &error));
    CHECK(error.find("waited on from two event loops at once") != std::string::npos);
    CHECK(error.find("run_on/spawn_on") != std::string::npos);
}

TEST_CASE("sharing rules - a stream used by one loop throws logic_error when another loop reads it",
          "[loop][sharing]") {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    std::string error;
    std::size_t got = 0;
    {
        coring::stream a(fds[0]);
        coring::stream b(fds[1]);
        coring::event_loop loop;
        loop.run([](coring::stream* sa, coring::stream* sb, std::string* err, std::size_t* n) -> task<> {
            co_await sa->write_all(std::string_view("xy"));
            char c[1];
            *n = co_await sb->read(std::span<char>(c, 1)); // b now belongs to this loop
            // Another loop on another thread reads b meanwhile; this loop is blocked in join().
            std::thread other([sb, err] {
                coring::event_loop l2;
                try {
                    l2.run([](coring::stream* s2) -> task<> {
                        char d[1];
                        (void)co_await s2->read(std::span<char>(d, 1));
                    }(sb));
                } catch (const std::logic_error& e) {
                    *err = e.what();
                }
            });
            other.join();
            *n += co_await sb->read(std::span<char>(c, 1)); // still usable here
        }(&a, &b, &error, &got));
    }
    CHECK(got == 2);
    CHECK(coring_test::contains(error, "read on a stream that belongs to another event loop"));
}

TEST_CASE("sharing rules - a primitive may serve one loop after another", "[loop][sharing]") {
    coring::event ev;
    for (int round = 0; round < 2; ++round) {
        std::thread t([&ev] {
            coring::event_loop loop;
            loop.run([](coring::event* e) -> task<> {
                auto setter = coring::spawn([](coring::event* e2) -> task<> {
                    co_await coring::sleep(1ms);
                    e2->set();
                }(e));
                co_await e->wait();
                co_await setter;
                e->clear();
            }(&ev));
        });
        t.join();
    }
    CHECK_FALSE(ev.is_set());
}

#else

TEST_CASE("sharing rules - checks are off in this build", "[loop][sharing]") { SUCCEED("CORING_CHECKS is 0"); }

#endif

} // namespace test_sharing_rules
