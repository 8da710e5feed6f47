// A worker thread of a runtime's shared pool that fails to start must not strand another loop's job: loop 0's
// thread start is slow, then fails (EAGAIN, as when pids.max or RLIMIT_NPROC is reached); loop 1 submits a job
// meanwhile. Loop 0's to_thread throws std::system_error; loop 1's job must still run.
//
// Its own program, not a Catch test in coring_tests: it replaces pthread_create for the whole process, which a
// sanitizer's own pthread_create interceptor would not allow (tests/CMakeLists.txt leaves it out of those builds).
#include <coring/coring.hpp>
#include <coring/thread.hpp>

#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <thread>

using namespace std::chrono_literals;

namespace {
std::atomic<int> starts_from_loop0{0};
} // namespace

/// The first thread loop 0 starts (its first worker) takes 300 ms, then fails; every other start is the real one.
extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*fn)(void*), void* arg) {
    using real_t = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
    static const real_t real = reinterpret_cast<real_t>(::dlsym(RTLD_NEXT, "pthread_create"));
    char name[16] = {};
    ::pthread_getname_np(::pthread_self(), name, sizeof name);
    if (std::strcmp(name, "coring-loop-0") == 0 && starts_from_loop0.fetch_add(1) == 0) {
        std::this_thread::sleep_for(300ms);
        return EAGAIN;
    }
    return real(thread, attr, fn, arg);
}

int main() {
    std::atomic<bool> loop0_threw{false}, loop1_got{false};
    coring::runtime_options o;
    o.loop.worker_threads = 1;
    // No stall detector: its watchdog thread, started by the first loop, would be the thread start this program
    // makes fail (it then runs without one, as any loop where no thread can be started does).
    o.loop.slow_callback = 0ms;
    coring::runtime rt(2, o);
    rt.run([&](std::size_t i) -> coring::task<> {
        if (i == 0) {
            try {
                co_await coring::to_thread([] { return 1; });
            } catch (const std::system_error&) {
                loop0_threw = true;
            }
            co_return;
        }
        co_await coring::sleep(100ms); // loop 0 is inside its failing thread start now
        auto job = coring::spawn(coring::to_thread([] { return 2; }));
        for (int k = 0; k < 5000 && !job.done(); ++k) co_await coring::sleep(1ms);
        if (!job.done()) {
            job.cancel(); // stranded: end the run rather than hang
            try {
                co_await job;
            } catch (...) {}
            co_return;
        }
        const int v = co_await job;
        loop1_got = v == 2;
    });
    std::printf("loop 0's to_thread threw std::system_error: %s\nloop 1's job ran and returned 2: %s\n",
                loop0_threw ? "yes" : "NO", loop1_got ? "yes" : "NO");
    return loop0_threw && loop1_got ? 0 : 1;
}
