#pragma once

// The stall detector's watchdog (loop_options::slow_callback): one thread per process that looks at every loop a few
// times per threshold and flags a resume that has not returned for longer than it. The loop itself only stores a
// counter before each resume and compares one value after it: timing every resume would cost a clock read (5 ns for
// the coarse clock here, 28 for the precise one) on a path where a whole yield costs 6 ns.

#include <coring/detail/stall_beat.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace coring::detail {

/// The watchdog: a thread started by the first loop that asks for one, and left running (detached) for the process's
/// life once started, ticking only while some loop is registered. Never destroyed, so that a loop that outlives static
/// destruction can still unregister.
class stall_watch {
public:
    static stall_watch& instance() {
        static stall_watch* w = new stall_watch; // leaked on purpose, see above
        return *w;
    }

    void add(stall_beat* b) {
        std::lock_guard lock(m_);
        loops_.push_back(b);
        if (!started_) {
            std::thread([this] { watch(); }).detach();
            started_ = true;
        }
        cv_.notify_one();
    }

    /// After this returns the watchdog no longer touches `b`.
    void remove(stall_beat* b) noexcept {
        std::lock_guard lock(m_);
        loops_.erase(std::remove(loops_.begin(), loops_.end(), b), loops_.end());
    }

private:
    stall_watch() = default;

    void watch() {
        std::unique_lock lock(m_);
        for (;;) {
            cv_.wait(lock, [&] { return !loops_.empty(); });
            // A quarter of the smallest threshold: a stall is seen at most that much later than it began, so one of
            // threshold + tick is always reported and one shorter than the threshold never is.
            auto tick = std::chrono::nanoseconds::max();
            for (const stall_beat* b : loops_) tick = std::min(tick, b->threshold / 4);
            cv_.wait_for(lock, std::max(tick, std::chrono::nanoseconds(std::chrono::milliseconds(1))));
            const auto now = std::chrono::steady_clock::now();
            for (stall_beat* b : loops_) {
                const std::uint64_t beat = b->beat.load(std::memory_order_relaxed);
                if ((beat & 1) == 0 || beat != b->seen) {
                    b->seen = beat;
                    b->seen_at = now;
                    continue;
                }
                if (now - b->seen_at >= b->threshold && b->flagged.load(std::memory_order_relaxed) != beat) {
                    b->since.store(
                        std::chrono::duration_cast<std::chrono::nanoseconds>(b->seen_at.time_since_epoch()).count(),
                        std::memory_order_relaxed);
                    b->flagged.store(beat, std::memory_order_release);
                }
            }
        }
    }

    std::mutex m_;
    std::condition_variable cv_;
    std::vector<stall_beat*> loops_;
    bool started_ = false;
};

/// A loop's registration with the watchdog, for the loop's life (none when `threshold` is zero).
class stall_registration {
public:
    stall_registration() = default;
    explicit stall_registration(stall_beat& b) : b_(&b) { stall_watch::instance().add(b_); }
    stall_registration(const stall_registration&) = delete;
    stall_registration& operator=(const stall_registration&) = delete;
    ~stall_registration() {
        if (b_) stall_watch::instance().remove(b_);
    }

private:
    stall_beat* b_ = nullptr;
};

} // namespace coring::detail
