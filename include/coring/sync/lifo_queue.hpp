#pragma once

#include <coring/sync/queue.hpp>

#include <cstddef>
#include <utility>
#include <vector>

namespace coring {

namespace detail {

/// lifo_queue<T>'s storage (see fifo_storage for the interface): a vector used as a stack.
template <class T>
class lifo_storage {
public:
    [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
    [[nodiscard]] bool empty() const noexcept { return items_.empty(); }
    [[nodiscard]] T& next() noexcept { return items_.back(); }
    static constexpr bool admits_at_back = false; // see fifo_storage
    template <class U>
    void push(U&& v) {
        items_.push_back(std::forward<U>(v));
    }
    void pop() noexcept {
        items_.pop_back();
        // After a burst, do not keep a large buffer for the queue's whole life.
        if (items_.empty() && items_.capacity() > 1024) std::vector<T>().swap(items_);
    }

private:
    std::vector<T> items_;
};

} // namespace detail

/// A last-in, first-out queue between tasks of one event loop (asyncio.LifoQueue): pop() takes the newest item. The
/// rest (bounds, waiting, close(), cancellation, the single-loop rule) is basic_queue's, as for queue<T>.
template <class T>
using lifo_queue = basic_queue<T, detail::lifo_storage<T>>;

} // namespace coring
