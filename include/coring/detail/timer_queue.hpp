#pragma once

#include <time.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace coring::detail {

using clock = std::chrono::steady_clock;

/// CLOCK_MONOTONIC_COARSE: the same clock as steady_clock (CLOCK_MONOTONIC), read in about 5 ns instead of about
/// 30, but only as fine as the scheduler tick, and behind real time by however late the last tick was: usually up
/// to a tick, but on a virtual machine whose vCPU was not running, or under emulation, by tens of milliseconds
/// (18 ms seen on a KVM guest at rest, more under QEMU's TCG). So it may only decide what can be late, never what
/// would be early: the "can any timer be due yet?" check of every loop turn (a due timer then fires a little late),
/// and deadlines that tolerate it (coarse_deadline_after).
struct coarse_clock {
    static clock::time_point now() noexcept {
        timespec ts{};
        ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return clock::time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
    }
    /// One tick; duration::max() when the coarse clock is unavailable or too coarse to help (then nothing uses it).
    static clock::duration resolution() noexcept {
        static const clock::duration tick = [] {
            timespec ts{};
            if (::clock_getres(CLOCK_MONOTONIC_COARSE, &ts) != 0 || ts.tv_sec != 0 || ts.tv_nsec > 20'000'000)
                return clock::duration::max();
            return clock::duration(std::chrono::nanoseconds(ts.tv_nsec));
        }();
        return tick;
    }
};

/// base + d, clamped to the representable range.
inline clock::time_point deadline_from(clock::time_point base, clock::duration d) noexcept {
    if (d > clock::duration::zero() && base.time_since_epoch() > clock::duration::max() - d)
        return clock::time_point::max();
    return base + d;
}

/// now + d, never earlier: from the precise clock. (Far deadlines used to come from the coarse clock plus two ticks,
/// which was early whenever the last tick was more than two ticks late: by 4.5 ms for a 300 ms sleep on a loaded
/// virtual machine.)
inline clock::time_point deadline_after(clock::duration d) noexcept { return deadline_from(clock::now(), d); }

/// About now + d, for a far deadline whose exact moment does not matter (an HTTP connection's idle timeout of
/// seconds): from the coarse clock plus two ticks, a quarter of the cost of deadline_after, at most about two ticks
/// late and, when the coarse clock lags further (see coarse_clock), early by the excess. Near deadlines (under 64
/// ticks) come from the precise clock.
inline clock::time_point coarse_deadline_after(clock::duration d) noexcept {
    const clock::duration tick = coarse_clock::resolution();
    const bool far = tick != clock::duration::max() && d >= 64 * tick;
    return deadline_from(far ? coarse_clock::now() + 2 * tick : clock::now(), d);
}

/// False only when `earliest` is more than `margin` away by the coarse clock plus two ticks (real time is usually
/// less than that ahead of it; when it is further ahead, a due timer is only found late); true means "read the
/// precise clock to be sure". No subtraction from `earliest`, which may be time_point::min().
inline bool maybe_due(clock::time_point earliest, clock::duration margin = clock::duration::zero()) noexcept {
    const clock::duration tick = coarse_clock::resolution();
    if (tick == clock::duration::max()) return true;
    return coarse_clock::now() + 2 * tick + margin >= earliest;
}

/// A deadline in the loop's timer queue. Lives inside whoever waits (a sleeper's frame, a timeout), never allocated.
struct timer_node {
    static constexpr std::uint32_t unlinked = 0xffffffffu;

    clock::time_point deadline{};
    void (*fire)(timer_node*) noexcept = nullptr; // called once when the deadline has passed; must not resume inline
    timer_node* prev = nullptr;                   // neighbours while in a run
    timer_node* next = nullptr;
    std::uint32_t where = unlinked; // run index, or runs + heap index, or unlinked

    [[nodiscard]] bool linked() const noexcept { return where != unlinked; }
};

/// The loop's timers, all in user space: the loop arms one kernel wait for the earliest deadline, never one per timer.
///
/// Most programs create timers with a few fixed durations (every sleeper sleeps 1 s, every request has a 30 s
/// timeout), so deadlines mostly arrive in increasing order per duration. Those go into a few sorted runs (intrusive
/// lists appended at the tail): insert, remove and pop are O(1), which is what lets a million sleepers cost almost
/// nothing. A deadline that fits no run goes into a binary heap (O(log n)).
class timer_queue {
public:
    static constexpr std::uint32_t runs = 8;

    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

    void insert(timer_node* n) {
        const clock::time_point d = n->deadline;
        // Fast path: the run used last still fits (a stream of timers with one duration).
        std::uint32_t best = last_;
        if (!(run_[best].head && run_[best].tail_deadline <= d)) {
            best = runs;
            std::uint32_t free_run = runs;
            for (std::uint32_t r = 0; r < runs; ++r) {
                if (!run_[r].head) {
                    if (free_run == runs) free_run = r;
                } else if (run_[r].tail_deadline <= d &&
                           (best == runs || run_[r].tail_deadline > run_[best].tail_deadline)) {
                    best = r;
                }
            }
            if (best == runs) best = free_run;
        }
        if (best != runs) {
            run& r = run_[best];
            n->prev = r.tail;
            n->next = nullptr;
            if (r.tail) {
                r.tail->next = n;
            } else {
                r.head = n;
                r.head_deadline = d;
            }
            r.tail = n;
            r.tail_deadline = d;
            n->where = best;
            last_ = best;
        } else {
            heap_.push_back(n); // may throw: nothing is linked yet
            n->where = runs + static_cast<std::uint32_t>(heap_.size() - 1);
            sift_up(heap_.size() - 1);
        }
        ++size_;
    }

    void remove(timer_node* n) noexcept {
        if (!n->linked()) return;
        if (n->where < runs) {
            run& r = run_[n->where];
            if (n->prev) {
                n->prev->next = n->next;
            } else {
                r.head = n->next;
                if (r.head) r.head_deadline = r.head->deadline;
            }
            if (n->next) {
                n->next->prev = n->prev;
            } else {
                r.tail = n->prev;
                if (r.tail) r.tail_deadline = r.tail->deadline;
            }
            n->prev = n->next = nullptr;
        } else {
            const std::size_t i = n->where - runs;
            timer_node* last = heap_.back();
            heap_.pop_back();
            if (last != n) {
                heap_[i] = last;
                last->where = runs + static_cast<std::uint32_t>(i);
                sift_down(i);
                sift_up(last->where - runs);
            }
        }
        n->where = timer_node::unlinked;
        --size_;
    }

    /// The earliest deadline; the queue must not be empty.
    [[nodiscard]] clock::time_point earliest() const noexcept { return front()->deadline; }

    /// Unlinks and returns the earliest timer if its deadline is at or before `now`, else null.
    timer_node* pop_due(clock::time_point now) noexcept {
        if (size_ == 0) return nullptr;
        timer_node* n = front();
        if (n->deadline > now) return nullptr;
        remove(n);
        return n;
    }

private:
    // The deadlines of a run's ends are kept beside the pointers: choosing a run and finding the earliest timer then
    // read this array only, not timer nodes scattered over coroutine frames.
    struct run {
        timer_node* head = nullptr;
        timer_node* tail = nullptr;
        clock::time_point head_deadline{};
        clock::time_point tail_deadline{};
    };

    [[nodiscard]] timer_node* front() const noexcept {
        timer_node* best = heap_.empty() ? nullptr : heap_.front();
        clock::time_point best_deadline = best ? best->deadline : clock::time_point::max();
        for (const run& r : run_)
            if (r.head && (!best || r.head_deadline < best_deadline)) {
                best = r.head;
                best_deadline = r.head_deadline;
            }
        return best;
    }

    void place(std::size_t i, timer_node* n) noexcept {
        heap_[i] = n;
        n->where = runs + static_cast<std::uint32_t>(i);
    }
    void sift_up(std::size_t i) noexcept {
        timer_node* n = heap_[i];
        while (i > 0) {
            const std::size_t parent = (i - 1) / 2;
            if (heap_[parent]->deadline <= n->deadline) break;
            place(i, heap_[parent]);
            i = parent;
        }
        place(i, n);
    }
    void sift_down(std::size_t i) noexcept {
        timer_node* n = heap_[i];
        const std::size_t count = heap_.size();
        for (;;) {
            std::size_t c = 2 * i + 1;
            if (c >= count) break;
            if (c + 1 < count && heap_[c + 1]->deadline < heap_[c]->deadline) ++c;
            if (n->deadline <= heap_[c]->deadline) break;
            place(i, heap_[c]);
            i = c;
        }
        place(i, n);
    }

    run run_[runs];                 // sorted runs, each ordered by deadline from head to tail
    std::uint32_t last_ = 0;        // the run the last insert went to
    std::vector<timer_node*> heap_; // min-heap of the deadlines that fit no run
    std::size_t size_ = 0;          // timers in runs and heap together
};

} // namespace coring::detail
