#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace test_runtime_setup {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// Restores the calling thread's CPU affinity when it goes.
struct affinity_guard {
    cpu_set_t saved;
    affinity_guard() { REQUIRE(::sched_getaffinity(0, sizeof saved, &saved) == 0); }
    ~affinity_guard() { ::sched_setaffinity(0, sizeof saved, &saved); }
};

} // namespace

TEST_CASE("runtime - runs fn on every loop each on its own thread with its own loop", "[runtime]") {
    std::mutex m;
    std::set<std::thread::id> threads;
    std::set<coring::event_loop*> loops;
    int mismatches = 0;
    const auto caller = std::this_thread::get_id();
    coring::runtime rt(3);
    CHECK(rt.size() == 3);
    CHECK(coring::runtime::current() == nullptr);
    rt.run([&](std::size_t i) -> task<> {
        // The loops finish at different times; a loop whose fn is done keeps serving until all are.
        co_await coring::sleep(std::chrono::milliseconds(5 * i));
        std::lock_guard<std::mutex> lock(m);
        threads.insert(std::this_thread::get_id());
        loops.insert(&coring::event_loop::current());
        if (&coring::event_loop::current() != &rt.loop(i)) ++mismatches;
        if (coring::runtime::current() != &rt) ++mismatches;
        if (coring::runtime::index() != i) ++mismatches;
    });
    CHECK(threads.size() == 3);
    CHECK(threads.count(caller) == 0);
    CHECK(loops.size() == 3);
    CHECK(mismatches == 0);
}

TEST_CASE("runtime - run_on_cores with n = 0 makes one loop per CPU of the affinity mask", "[runtime]") {
    affinity_guard guard;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(::sched_getcpu(), &one);
    REQUIRE(::sched_setaffinity(0, sizeof one, &one) == 0);
    std::atomic<int> ran{0};
    coring::run_on_cores(0, [&](std::size_t) -> task<> {
        ran.fetch_add(1);
        co_return;
    });
    CHECK(ran.load() == 1);
    coring::runtime rt(0);
    CHECK(rt.size() == 1);
}

TEST_CASE("runtime - pin puts loop i on the i-th CPU of the affinity mask", "[runtime]") {
    cpu_set_t mask;
    REQUIRE(::sched_getaffinity(0, sizeof mask, &mask) == 0);
    std::vector<int> cpus;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &mask)) cpus.push_back(c);
    coring::runtime_options o;
    o.pin = true;
    const std::size_t n = cpus.size() + 1; // one more than the CPUs: wraps around
    std::mutex m;
    std::vector<std::vector<int>> seen(n);
    coring::run_on_cores(
        n,
        [&](std::size_t i) -> task<> {
            // No Catch macros on loop threads (Catch is not thread-safe): record, check after run.
            cpu_set_t s;
            CPU_ZERO(&s);
            if (::pthread_getaffinity_np(::pthread_self(), sizeof s, &s) != 0) co_return;
            std::lock_guard<std::mutex> lock(m);
            for (int c = 0; c < CPU_SETSIZE; ++c)
                if (CPU_ISSET(c, &s)) seen[i].push_back(c);
            co_return;
        },
        o);
    for (std::size_t i = 0; i < n; ++i) {
        REQUIRE(seen[i].size() == 1);
        CHECK(seen[i][0] == cpus[i % cpus.size()]);
    }
}

TEST_CASE("runtime - a runtime never run tears its loops down on their threads", "[runtime]") {
    const int before = coring_test::open_fds();
    {
        coring::runtime rt(2);
        CHECK(rt.loop(0).task_count() == 0);
        CHECK(&rt.loop(0) != &rt.loop(1));
    }
    CHECK(coring_test::open_fds() == before);
}

TEST_CASE("runtime - loops serve to_thread jobs and local tasks while fn runs", "[runtime]") {
    std::atomic<long> total{0};
    coring::run_on_cores(2, [&](std::size_t i) -> task<> {
        coring::task_group g;
        for (int k = 0; k < 20; ++k)
            g.spawn([](std::size_t base, int kk, std::atomic<long>* t) -> task<> {
                auto work = [base, kk] { return static_cast<long>(base * 100 + static_cast<std::size_t>(kk)); };
                const long v = co_await coring::to_thread(work);
                t->fetch_add(v);
            }(i, k, &total));
        co_await g.join();
    });
    CHECK(total.load() == (0 * 100 * 20 + 190) + (1 * 100 * 20 + 190));
}

} // namespace test_runtime_setup
