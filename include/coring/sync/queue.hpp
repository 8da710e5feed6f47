#pragma once

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace coring {

/// Thrown by queue operations once the queue is closed (asyncio.QueueShutDown): by push() and by the pushers that
/// were waiting, and by pop() once the closed queue is empty (including the poppers that were waiting).
class queue_closed : public std::exception {
public:
    /// A fixed message: "coring: the queue is closed".
    [[nodiscard]] const char* what() const noexcept override { return "coring: the queue is closed"; }
};

namespace detail {

/// queue<T>'s storage, first in first out: a growable ring of items with manual lifetimes (no default constructor
/// needed, and no per-item allocation: std::deque allocates a block every few hundred bytes of traffic).
///
/// A basic_queue storage has size(), empty(), next() (the item pop() removes), push(item) (may throw; then nothing
/// changed) and pop().
template <class T>
class fifo_storage {
public:
    fifo_storage() noexcept = default;
    fifo_storage(const fifo_storage&) = delete;
    fifo_storage& operator=(const fifo_storage&) = delete;
    ~fifo_storage() {
        while (size_) pop();
        release();
    }

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    /// The item the next pop() removes.
    [[nodiscard]] T& next() noexcept { return data_[head_]; }
    /// A pushed item comes out after every item already queued (take() relies on it).
    static constexpr bool admits_at_back = true;

    template <class U>
    void push(U&& v) {
        if (size_ == cap_) grow();
        std::construct_at(data_ + ((head_ + size_) & (cap_ - 1)), std::forward<U>(v));
        ++size_;
    }
    void pop() noexcept {
        std::destroy_at(data_ + head_);
        head_ = (head_ + 1) & (cap_ - 1);
        // After a burst, do not keep a large buffer for the queue's whole life.
        if (--size_ == 0 && cap_ > shrink_above) release();
    }

private:
    static constexpr std::size_t first_capacity = 16;
    static constexpr std::size_t shrink_above = 1024;

    // Strong guarantee: the items are moved only when that cannot throw, else copied.
    void grow() {
        const std::size_t cap = cap_ ? cap_ * 2 : first_capacity;
        std::allocator<T> a;
        T* nd = a.allocate(cap);
        std::size_t i = 0;
        try {
            for (; i < size_; ++i) std::construct_at(nd + i, std::move_if_noexcept(data_[(head_ + i) & (cap_ - 1)]));
        } catch (...) {
            std::destroy(nd, nd + i);
            a.deallocate(nd, cap);
            throw;
        }
        for (std::size_t j = 0; j < size_; ++j) std::destroy_at(data_ + ((head_ + j) & (cap_ - 1)));
        if (data_) a.deallocate(data_, cap_);
        data_ = nd;
        cap_ = cap;
        head_ = 0;
    }
    void release() noexcept {
        if (data_) std::allocator<T>().deallocate(data_, cap_);
        data_ = nullptr;
        cap_ = head_ = 0;
    }

    T* data_ = nullptr;    // cap_ slots, size_ of them alive from head_ on (wrapping)
    std::size_t cap_ = 0;  // 0 or a power of two
    std::size_t head_ = 0; // slot of the oldest item
    std::size_t size_ = 0; // items alive
};

} // namespace detail

/// A queue between tasks of one event loop: push() waits while a bounded queue is full, pop() waits while the queue
/// is empty. `Storage` decides which item comes out next: the oldest for queue<T> (asyncio.Queue), the newest for
/// lifo_queue<T> (asyncio.LifoQueue), the smallest for priority_queue<T> (asyncio.PriorityQueue). "Oldest item"
/// below means "the item next in that order".
///
/// `maxsize` 0 makes it unbounded. Once handed to push() or try_push(), an item is only ever moved: a push that finds
/// a task waiting in pop() moves its item straight into that task's awaiter, and a pop from a full queue moves the
/// oldest waiting pusher's item into the queue, so woken waiters never have to race for a slot or an item. Waiters
/// are served in order (FIFO), on both sides. queue<T>'s items live in a ring buffer that grows by doubling (a bounded
/// queue never beyond maxsize rounded up to a power of two) and is freed when a large one empties.
///
/// close() (asyncio's Queue.shutdown(), not immediate) ends the queue's life: every waiting pusher and popper wakes
/// with queue_closed; later push() throws queue_closed and try_push() returns false; pop() keeps returning the items
/// still queued and throws queue_closed once the queue is empty; try_pop() then returns std::nullopt.
///
/// Cancellation: a pusher cancelled while it waits did not enqueue its item (it is destroyed with the awaiter); a
/// popper cancelled while it waits took nothing. A waiter that was already handed its slot or item when the
/// cancellation arrived completes normally (the item is not lost) and meets the cancellation at its next wait.
///
/// T's move constructor should not throw. If it does, the exception propagates from the operation that moved, no
/// waiter is lost, and the queue may hold one item more than maxsize for a while.
///
/// Single loop: used only on the thread of the event loop whose tasks use it (no locks, no atomics). It can be
/// neither copied nor moved (waiters point into it). Destroy it only once no task waits on it: tasks still
/// waiting then are orphaned and stay suspended until they are cancelled.
template <class T, class Storage>
class basic_queue {
    static_assert(
        std::is_object_v<T> && !std::is_const_v<T> && std::is_move_constructible_v<T>,
        "coring::queue<T> (and lifo_queue, priority_queue): T must be a non-const, move-constructible object type");

public:
    using value_type = T; ///< the type of the items

    /// An unbounded queue (usable as a default-initialised member). Allocates nothing until the first item.
    basic_queue() noexcept = default;
    /// A queue holding at most `maxsize` items; 0 for no limit.
    explicit basic_queue(std::size_t maxsize) noexcept : max_(maxsize) {}
    basic_queue(const basic_queue&) = delete;
    basic_queue& operator=(const basic_queue&) = delete;

    /// The awaitable of push().
    class [[nodiscard]] push_awaitable : detail::waiter {
    public:
        /// A push of `item` (held here until it goes in) onto `q`, which starts when it is awaited; push() is the
        /// usual way to get one.
        push_awaitable(basic_queue& q, T item) noexcept(std::is_nothrow_move_constructible_v<T>)
            : q_(&q), item_(std::move(item)) {}
        /// Movable until it is awaited (a spawned push is moved into its task's frame).
        push_awaitable(push_awaitable&& o) noexcept(std::is_nothrow_move_constructible_v<T>)
            : detail::waiter(o), q_(o.q_), item_(std::move(o.item_)) {}
        push_awaitable& operator=(push_awaitable&&) = delete;

        /// Enqueues at once when the queue has room or a task waits in pop(), even for a cancelled task (it does not
        /// wait). Also ready (to throw) when the queue is closed.
        bool await_ready() {
            basic_queue& q = *q_;
            if (q.closed_) {
                set_result(outcome::closed);
                return true;
            }
            if (!q.poppers_.empty()) {
                q.hand_to_popper(std::move(item_));
                set_result(outcome::granted);
                return true;
            }
            if (q.full()) return false;
            q.items_.push(std::move(item_));
            set_result(outcome::granted);
            return true;
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            return suspend(q_->pushers_, h, "coring::queue::push");
        }
        /// Returns once the item is in the queue (or with a popper). Throws queue_closed when the queue was closed
        /// before the item could go in, cancelled_error when the task was cancelled while it waited; in both cases the
        /// item was not enqueued.
        void await_resume() const {
            switch (result()) {
            case outcome::cancelled:
                throw cancelled_error();
            case outcome::closed:
                throw queue_closed();
            default:
                return;
            }
        }

    private:
        friend class basic_queue;
        basic_queue* q_;
        T item_; // the item to enqueue; taken by a pop() while this pusher waits
    };

    /// The awaitable of pop().
    class [[nodiscard]] pop_awaitable : detail::waiter {
    public:
        /// A pop from `q`, which starts when it is awaited; pop() is the usual way to get one.
        explicit pop_awaitable(basic_queue& q) noexcept : q_(&q) {}
        /// Movable until it is awaited (a spawned pop is moved into its task's frame).
        pop_awaitable(pop_awaitable&& o) noexcept : detail::waiter(o), q_(o.q_) {}
        pop_awaitable& operator=(pop_awaitable&&) = delete;

        /// Ready at once when an item is queued, even for a cancelled task (it does not wait). Also ready (to throw)
        /// when the queue is closed and empty.
        bool await_ready() const noexcept { return !q_->items_.empty() || q_->closed_; }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            return suspend(q_->poppers_, h, "coring::queue::pop");
        }
        /// The oldest item. Throws queue_closed when the queue is closed and empty, cancelled_error when the task was
        /// cancelled while it waited (it then took nothing).
        T await_resume() {
            switch (result()) {
            case outcome::granted:
                return std::move(*item_);
            case outcome::cancelled:
                throw cancelled_error();
            case outcome::closed:
                throw queue_closed();
            case outcome::waiting:
                break; // did not suspend
            }
            if (q_->items_.empty()) throw queue_closed();
            return q_->take();
        }

    private:
        friend class basic_queue;
        basic_queue* q_;
        std::optional<T> item_; // where a push() puts its item while this popper waits
    };

    /// Puts `item` at the end of the queue, waiting while a bounded queue is full (asyncio's Queue.put()). Hands it
    /// straight to the oldest task waiting in pop() if there is one. A cancellation point while it waits: throws
    /// cancelled_error there (the item is not enqueued), or at once when the task was already cancelled and the queue
    /// is full. Throws queue_closed when the queue is or gets closed before the item is in; std::logic_error when it
    /// would wait on a thread without an event loop; std::bad_alloc when the buffer cannot grow.
    [[nodiscard]] push_awaitable push(T item) noexcept(std::is_nothrow_move_constructible_v<T>) {
        return push_awaitable(*this, std::move(item));
    }

    /// Removes and returns the oldest item, waiting while the queue is empty (asyncio's Queue.get()). From a full
    /// queue, the oldest waiting pusher's item moves in. A cancellation point while it waits: throws cancelled_error
    /// there (nothing was taken), or at once when the task was already cancelled and the queue is empty. Throws
    /// queue_closed when the queue is closed and empty (also when it gets closed while this waits); std::logic_error
    /// when it would wait on a thread without an event loop.
    [[nodiscard]] pop_awaitable pop() noexcept { return pop_awaitable(*this); }

    /// Enqueues `item` if that needs no waiting (room, or a task waiting in pop()); never waits. Returns false, with
    /// `item` untouched, when the queue is full or closed. Throws std::bad_alloc when the buffer cannot grow.
    bool try_push(T&& item) { return try_push_impl(std::move(item)); }
    /// Enqueues a copy of `item` if that needs no waiting; see try_push(T&&).
    bool try_push(const T& item) { return try_push_impl(item); }

    /// Removes and returns the oldest item if there is one; never waits. std::nullopt when the queue is empty (also
    /// when it is closed and empty).
    [[nodiscard]] std::optional<T> try_pop() {
        if (items_.empty()) return std::nullopt;
        return std::optional<T>(take());
    }

    /// Closes the queue (asyncio's Queue.shutdown()): wakes every waiting pusher (queue_closed, item not enqueued) and
    /// every waiting popper (queue_closed; they only wait when the queue is empty). Queued items stay poppable.
    /// Idempotent. Loop thread only.
    void close() noexcept {
        if (closed_) return;
        closed_ = true;
        while (!pushers_.empty()) detail::waiter::from(pushers_.pop_front())->wake(outcome::closed);
        while (!poppers_.empty()) detail::waiter::from(poppers_.pop_front())->wake(outcome::closed);
    }

    /// Whether close() was called.
    [[nodiscard]] bool closed() const noexcept { return closed_; }
    /// Items in the queue (asyncio's qsize()); items held by waiting pushers do not count.
    [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
    /// Whether the queue holds no item.
    [[nodiscard]] bool empty() const noexcept { return items_.empty(); }
    /// Whether a push() would wait: a bounded queue holding maxsize items. Never true for an unbounded queue.
    [[nodiscard]] bool full() const noexcept { return max_ != 0 && items_.size() >= max_; }
    /// The maxsize the queue was made with; 0 means unbounded.
    [[nodiscard]] std::size_t capacity() const noexcept { return max_; }

private:
    using outcome = detail::waiter::outcome;

    template <class U>
    bool try_push_impl(U&& item) {
        if (closed_) return false;
        if (!poppers_.empty()) {
            hand_to_popper(std::forward<U>(item));
            return true;
        }
        if (full()) return false;
        items_.push(std::forward<U>(item));
        return true;
    }

    /// Moves (or copies) `item` into the oldest waiting popper and wakes it. Poppers only wait while the queue is
    /// empty, so the item skips the buffer without overtaking anything.
    template <class U>
    void hand_to_popper(U&& item) {
        auto* p = static_cast<pop_awaitable*>(detail::waiter::from(poppers_.front()));
        p->item_.emplace(std::forward<U>(item)); // first: if it throws, the popper still waits
        poppers_.pop_front();
        p->wake(outcome::granted);
    }

    /// Removes the oldest item (the queue must not be empty) and lets the oldest waiting pusher's item into the slot
    /// it frees (pushers only wait while the queue is full).
    T take() {
        // Admitting the pusher first is only order-neutral when its item goes behind every other (FIFO); from a stack
        // or a heap it could be the very item this pop returns.
        if constexpr (std::is_nothrow_move_constructible_v<T> || !Storage::admits_at_back) {
            T out(std::move(items_.next()));
            items_.pop();
            if (!pushers_.empty()) admit_pusher(); // into the freed slot: nothing can throw
            return out;
        } else {
            // The pusher's item goes in first (the buffer may grow by one slot): should moving the front item out
            // throw, that pusher has still been served and nothing is lost.
            if (!pushers_.empty()) admit_pusher();
            T out(std::move(items_.next()));
            items_.pop();
            return out;
        }
    }

    /// Moves the oldest waiting pusher's item to the end of the queue and wakes it.
    void admit_pusher() {
        auto* p = static_cast<push_awaitable*>(detail::waiter::from(pushers_.front()));
        items_.push(std::move(p->item_)); // first: if it throws, the pusher still waits
        pushers_.pop_front();
        p->wake(outcome::granted);
    }

    Storage items_;             // the queued items, in the order they come out
    detail::wait_list pushers_; // tasks suspended in push(), oldest first; non-empty only while the queue is full
    detail::wait_list poppers_; // tasks suspended in pop(), oldest first; non-empty only while the queue is empty
    std::size_t max_ = 0;       // maxsize; 0 = unbounded
    bool closed_ = false;       // close() was called
};

/// The FIFO queue (asyncio.Queue); see basic_queue.
template <class T>
using queue = basic_queue<T, detail::fifo_storage<T>>;

} // namespace coring
