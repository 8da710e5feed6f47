#pragma once

#include <coring/sync/queue.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

namespace coring {

namespace detail {

/// priority_queue<T, Compare>'s storage (see fifo_storage for the interface): a binary heap whose top is the item
/// that compares smallest.
template <class T, class Compare>
class heap_storage {
public:
    [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
    [[nodiscard]] bool empty() const noexcept { return items_.empty(); }
    [[nodiscard]] T& next() noexcept { return items_.front(); }
    static constexpr bool admits_at_back = false; // see fifo_storage
    /// Strong guarantee for a comparison that throws: the new item's place is found by comparisons alone, before
    /// anything moves (std::push_heap would leave the moved-from shell of the item in the heap and lose the item).
    template <class U>
    void push(U&& v) {
        const T& nv = v; // U is T, T& or const T& (basic_queue pushes only T)
        std::size_t hole = items_.size();
        while (hole > 0 && less_(nv, items_[(hole - 1) / 2])) hole = (hole - 1) / 2;
        items_.push_back(std::forward<U>(v)); // vector's guarantee; from here on, moves only
        std::size_t i = items_.size() - 1;
        if (i == hole) return;
        T moving(std::move(items_[i]));
        for (; i != hole; i = (i - 1) / 2) items_[i] = std::move(items_[(i - 1) / 2]);
        items_[hole] = std::move(moving);
    }
    void pop() noexcept {
        std::pop_heap(items_.begin(), items_.end(), after{&less_});
        items_.pop_back();
        if (items_.empty() && items_.capacity() > 1024) std::vector<T>().swap(items_);
    }

private:
    // std's heap functions keep the largest on top; "a after b" makes the smallest the largest.
    struct after {
        Compare* less;
        bool operator()(const T& a, const T& b) const { return (*less)(b, a); }
    };

    std::vector<T> items_;
    [[no_unique_address]] Compare less_{};
};

} // namespace detail

/// A queue between tasks of one event loop that hands out the smallest item first (asyncio.PriorityQueue, Python's
/// heapq): push `std::pair{priority, job}` and the lowest priority comes out first. That is the opposite of
/// std::priority_queue, which pops the largest: use `priority_queue<T, std::greater<T>>` for largest first. Items
/// that compare equal come out in no particular order. The rest (bounds, waiting, close(), cancellation, the
/// single-loop rule) is basic_queue's, as for queue<T>.
///
/// The comparison and T's moves should not throw: pop() cannot undo a half-done heap step.
template <class T, class Compare = std::less<T>>
using priority_queue = basic_queue<T, detail::heap_storage<T, Compare>>;

} // namespace coring
