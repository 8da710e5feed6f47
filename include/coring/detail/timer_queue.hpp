#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace coring::detail {

using clock = std::chrono::steady_clock;

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
        std::uint32_t best = runs, free_run = runs;
        for (std::uint32_t r = 0; r < runs; ++r) {
            if (!run_[r].head) {
                if (free_run == runs) free_run = r;
            } else if (run_[r].tail->deadline <= n->deadline &&
                       (best == runs || run_[r].tail->deadline > run_[best].tail->deadline)) {
                best = r;
            }
        }
        if (best == runs) best = free_run;
        if (best != runs) {
            run& r = run_[best];
            n->prev = r.tail;
            n->next = nullptr;
            if (r.tail) r.tail->next = n;
            else r.head = n;
            r.tail = n;
            n->where = best;
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
            if (n->prev) n->prev->next = n->next;
            else r.head = n->next;
            if (n->next) n->next->prev = n->prev;
            else r.tail = n->prev;
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
    struct run {
        timer_node* head = nullptr;
        timer_node* tail = nullptr;
    };

    [[nodiscard]] timer_node* front() const noexcept {
        timer_node* best = heap_.empty() ? nullptr : heap_.front();
        for (const run& r : run_)
            if (r.head && (!best || r.head->deadline < best->deadline)) best = r.head;
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
    std::vector<timer_node*> heap_; // min-heap of the deadlines that fit no run
    std::size_t size_ = 0;          // timers in runs and heap together
};

} // namespace coring::detail
