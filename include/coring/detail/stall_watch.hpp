#pragma once

// The stall detector's watchdog (loop_options::slow_callback): one thread per process that looks at every loop a few
// times per threshold and flags a resume that has not returned for longer than it. The loop itself only stores a
// counter before each resume and compares one value after it: timing every resume would cost a clock read (5 ns for
// the coarse clock here, 28 for the precise one) on a path where a whole yield costs 6 ns.

#include <coring/detail/stall_beat.hpp>

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace coring::detail {

/// The watchdog: a thread started by the first loop that asks for one, and left running (detached) for the process's
/// life once started, ticking only while some loop is registered. Never destroyed, so that a loop that outlives static
/// destruction can still unregister.
class stall_watch {
public:
    static stall_watch& instance() {
        static stall_watch* w = [] {
            auto* s = new stall_watch; // leaked on purpose, see above
            // A forked child has the memory but not the thread (and maybe a mutex some other thread held): it starts
            // afresh, and its own loops start a watchdog of their own.
            ::pthread_atfork(nullptr, nullptr, [] { instance().reset_in_child(); });
            return s;
        }();
        return *w;
    }

    /// Registers `b`; false (and `b` is not watched) when no thread could be started for the watchdog.
    bool add(stall_beat* b) noexcept {
        std::lock_guard lock(*m_);
        if (!started_ && !start()) return false;
        try {
            loops_.push_back(b);
        } catch (...) {
            return false;
        }
        cv_->notify_one();
        return true;
    }

    /// After this returns the watchdog no longer touches `b`.
    void remove(stall_beat* b) noexcept {
        std::lock_guard lock(*m_);
        loops_.erase(std::remove(loops_.begin(), loops_.end(), b), loops_.end());
    }

private:
    stall_watch() = default;

    bool start() noexcept {
        // Every signal blocked in the new thread (it inherits the creator's mask): a process-directed signal (SIGINT,
        // SIGTERM, dump_on_signal's SIGUSR1) must go to a thread that waits for it, never kill the process here.
        sigset_t all, old;
        ::sigfillset(&all);
        ::pthread_sigmask(SIG_BLOCK, &all, &old);
        try {
            std::thread([this] { watch(); }).detach();
            started_ = true;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "coring: no thread for the stall detector (%s): loop_options::slow_callback is off\n",
                         e.what());
        }
        ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
        return started_;
    }

    void reset_in_child() noexcept {
        // The parent's mutex and condition variable may be in any state: new ones (the old ones are leaked).
        m_ = new (std::nothrow) std::mutex;
        cv_ = new (std::nothrow) std::condition_variable;
        if (!m_ || !cv_) std::terminate();
        loops_.clear();
        started_ = false;
    }

    void watch() {
        ::pthread_setname_np(::pthread_self(), "coring-stalls");
        std::mutex& m = *m_;
        std::condition_variable& cv = *cv_;
        std::unique_lock lock(m);
        for (;;) {
            cv.wait(lock, [&] { return !loops_.empty(); });
            // A quarter of the smallest threshold: a stall is seen at most that much (plus scheduling delay) later
            // than it began, and one shorter than the threshold is never flagged.
            auto tick = std::chrono::nanoseconds::max();
            for (const stall_beat* b : loops_) tick = std::min(tick, b->threshold / 4);
            cv.wait_for(lock, std::max(tick, std::chrono::nanoseconds(std::chrono::milliseconds(1))));
            // Read before the beats: a beat unchanged since a time read before it was seen last has been unchanged
            // for at least that long.
            const auto before = std::chrono::steady_clock::now();
            for (stall_beat* b : loops_) {
                const std::uint64_t beat = b->beat.load(std::memory_order_relaxed);
                if ((beat & 1) == 0 || beat != b->seen) {
                    // Newly seen: it began no later than now, which is read after the load.
                    b->seen = beat;
                    b->seen_at = std::chrono::steady_clock::now();
                    continue;
                }
                if (before - b->seen_at >= b->threshold && b->flagged.load(std::memory_order_relaxed) != beat) {
                    b->since.store(
                        std::chrono::duration_cast<std::chrono::nanoseconds>(b->seen_at.time_since_epoch()).count(),
                        std::memory_order_relaxed);
                    b->flagged.store(beat, std::memory_order_release);
                }
            }
        }
    }

    // Pointers, so that a forked child can replace them (reset_in_child).
    std::mutex* m_ = new std::mutex;
    std::condition_variable* cv_ = new std::condition_variable;
    std::vector<stall_beat*> loops_;
    bool started_ = false;
};

/// A loop's registration with the watchdog, for the loop's life (none when `threshold` is zero).
class stall_registration {
public:
    stall_registration() = default;
    explicit stall_registration(stall_beat& b) noexcept : b_(stall_watch::instance().add(&b) ? &b : nullptr) {}
    stall_registration(const stall_registration&) = delete;
    stall_registration& operator=(const stall_registration&) = delete;
    ~stall_registration() {
        if (b_) stall_watch::instance().remove(b_);
    }

private:
    stall_beat* b_ = nullptr;
};

} // namespace coring::detail
