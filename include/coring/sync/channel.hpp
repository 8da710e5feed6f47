#pragma once

#include <coring/detail/channel_state.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/error.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace coring {

/// Thrown by channel<T>::send() once the channel is closed: by a send that starts after close(), and by the senders
/// that were waiting when it came (their items were not enqueued). Distinct from queue_closed.
class channel_closed : public std::exception {
public:
    /// A fixed message: "coring: the channel is closed".
    [[nodiscard]] const char* what() const noexcept override { return "coring: the channel is closed"; }
};

/// A bounded FIFO channel between event loops (threads): the way for tasks on different loops of a runtime to pass
/// items, where queue<T> serves the tasks of one loop.
///
/// A channel<T> is a cheap, copyable handle to shared state; copies may be handed to other loops and threads, and the
/// last one destroys the items never received. The buffer holds exactly `capacity` items in slots allocated once, so
/// passing an item allocates nothing. The awaitables of send() and receive() refer to the state without owning it (no
/// reference count traffic per item): a handle must live until they are awaited; a waiting one keeps the state itself.
///
/// Senders: any number, on any loops. send() waits while the buffer is full; waiting senders are served in order,
/// and an item handed to send() is only ever moved. Items sent one after another by one task arrive in that order.
/// Receivers: one receive() waits at a time. A second receive() that would wait while another one waits throws
/// std::logic_error (try_receive() and a receive() that finds an item are always allowed). MPMC may come later.
///
/// Wake-ups: a task waits on its own loop. A sender or receiver that wakes a waiter of the same loop queues it
/// directly; one on another loop (or a thread with no loop, for close()) posts a message to that loop's mailbox, and
/// the waiter's own thread does the rest. No thread ever resumes or schedules another loop's frame. A task waiting on
/// a channel counts, for its loop, as expecting a message: a loop whose only task waits on a channel that nobody will
/// ever fill waits for ever instead of reporting a deadlock.
///
/// Cancellation:
/// - a send cancelled while it waits did not enqueue its item (it is destroyed with the awaitable) and throws
///   cancelled_error; if a receiver had already moved its item into the buffer, the grant wins: the send completes
///   normally and the task meets its cancellation at its next wait;
/// - a receive cancelled while it waits takes nothing, even when it was already woken for an item: that item stays in
///   the buffer for the next receive.
/// - A task already cancelled when it would wait throws cancelled_error without waiting; an operation that needs no
///   wait completes even for a cancelled task.
///
/// close() (idempotent, from any thread, including one with no loop) wakes every waiting sender with channel_closed
/// (their items are not enqueued) and the waiting receiver. Items already in the buffer stay receivable; receive()
/// returns std::nullopt once the channel is closed and empty, and that is final.
///
/// Locking: the buffer is a lock-free ring (crossbeam-channel's array flavour), so a send that finds room and a receive
/// that finds an item take no lock while nobody waits. A std::mutex guards the waiters: the list of waiting senders,
/// the waiting receiver, every waiter's state and the closed flag. It is taken to wait, to wake a waiter, to cancel a
/// wait, to admit a waiting sender and to close. Wake-ups (mailbox posts, schedule) happen after it is released. A
/// send that finds room at the very moment another sender starts to wait may overtake it by one slot; waiting senders
/// are otherwise served in order. T's move constructor must not throw.
template <class T>
class channel {
    static_assert(std::is_object_v<T> && !std::is_const_v<T> && std::is_nothrow_move_constructible_v<T>,
                  "coring::channel<T>: T must be a non-const object type with a non-throwing move constructor");
    using shared_state = detail::channel_state<T>;
    using wstate = detail::channel_waiter::state;

public:
    using value_type = T; ///< the type of the items

    /// A channel buffering up to `capacity` items (at least 1). Throws std::invalid_argument for 0 (or a capacity
    /// beyond SIZE_MAX / 16), std::bad_alloc.
    explicit channel(std::size_t capacity) : s_(make_state(capacity)) {}

    /// The awaitable of send().
    class [[nodiscard]] send_awaitable : detail::channel_waiter {
    public:
        /// Made by send(): a send of `item` (held here until it goes in) into the state `s`, which it does not own
        /// until it waits.
        send_awaitable(shared_state* s, T item) noexcept
            : detail::channel_waiter(&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::channel_label>>,
                                     &on_wake),
              s_(s),
              item_(std::move(item)) {}
        /// Movable until it is awaited (a spawned send is moved into its task's frame).
        send_awaitable(send_awaitable&& o) noexcept
            : detail::channel_waiter(&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::channel_label>>,
                                     &on_wake),
              s_(o.s_),
              item_(std::move(o.item_)) {}
        send_awaitable& operator=(send_awaitable&&) = delete;
        /// A frame destroyed while its send waits (not something coring does) leaves the channel first.
        ~send_awaitable() {
            if (!parked_) return;
            std::lock_guard<std::mutex> lock(s_->mutex);
            if (st_ != wstate::waiting) return;
            unlink();
            s_->senders_waiting.fetch_sub(1, std::memory_order_seq_cst);
        }

        /// Enqueues at once when there is room and no sender waits, even for a cancelled task. Also ready (to throw)
        /// when the channel is closed.
        bool await_ready() noexcept {
            // Behind waiting senders: wait too (FIFO), in await_suspend.
            if (s_->senders_waiting.load(std::memory_order_seq_cst) != 0) return false;
            switch (s_->ring.try_push(item_)) {
            case shared_state::result::ok:
                st_ = wstate::granted;
                fire(s_->after_push());
                return true;
            case shared_state::result::closed:
                st_ = wstate::closed;
                return true;
            default:
                return false;
            }
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            ctx_ = detail::context_of(h);
            if (ctx_ && ctx_->requested) {
                st_ = wstate::cancelled;
                return false;
            }
            prepare(h, "coring::channel::send");
            keep_ = s_->shared_from_this(); // the last handle may go while this waits
            detail::channel_waiter* wake = nullptr;
            {
                std::lock_guard<std::mutex> lock(s_->mutex);
                if (s_->closed) {
                    st_ = wstate::closed;
                } else {
                    // Announce first, then look for room: a pop either leaves room this push finds, or sees the
                    // announcement and admits this sender once it waits (the pop's admit needs the mutex).
                    s_->senders_waiting.fetch_add(1, std::memory_order_seq_cst);
                    if (s_->senders.empty() && s_->ring.try_push(item_) == shared_state::result::ok) {
                        s_->senders_waiting.fetch_sub(1, std::memory_order_seq_cst);
                        st_ = wstate::granted;
                        wake = s_->notify_receiver();
                    } else {
                        parked_ = true;
                        st_ = wstate::waiting;
                        s_->senders.push_back(this); // publish last
                        return true;
                    }
                }
            }
            unprepare();
            fire(wake);
            return false;
        }
        /// Returns once the item is in the channel. Throws channel_closed when the channel was closed before it went
        /// in, cancelled_error when the task was cancelled first; in both cases the item was not enqueued.
        void await_resume() const {
            switch (st_) {
            case wstate::cancelled:
                throw cancelled_error();
            case wstate::closed:
                throw channel_closed();
            default:
                return;
            }
        }

    private:
        friend class detail::channel_state<T>;

        // Home thread: granted or closed by another side; the state was set under the mutex.
        static void on_wake(detail::channel_waiter* w) noexcept { w->finish(); }
        // Home thread, from cancel_context::request().
        static void on_cancel(detail::cancel_point* c) noexcept {
            auto* self = static_cast<send_awaitable*>(c);
            {
                std::lock_guard<std::mutex> lock(self->s_->mutex);
                if (self->st_ != wstate::waiting) return; // granted or closed: the wake is on its way, and wins
                self->unlink();
                self->s_->senders_waiting.fetch_sub(1, std::memory_order_seq_cst);
                self->st_ = wstate::cancelled;
            }
            self->finish();
        }

        shared_state* s_; // kept alive by the handle it came from, and by keep_ while parked
        T item_;          // moved into the buffer by whoever grants this send
    };

    /// The awaitable of receive().
    class [[nodiscard]] receive_awaitable : detail::channel_waiter {
    public:
        /// Made by receive(): a receive from the state `s`, which it does not own until it waits.
        explicit receive_awaitable(shared_state* s) noexcept
            : detail::channel_waiter(&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::channel_label>>,
                                     &on_wake),
              s_(s) {}
        /// Movable until it is awaited.
        receive_awaitable(receive_awaitable&& o) noexcept
            : detail::channel_waiter(&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::channel_label>>,
                                     &on_wake),
              s_(o.s_) {}
        receive_awaitable& operator=(receive_awaitable&&) = delete;
        ~receive_awaitable() {
            if (!parked_) return;
            std::lock_guard<std::mutex> lock(s_->mutex);
            if (s_->receiver != this) return;
            s_->receiver = nullptr;
            s_->receiver_parked.store(false, std::memory_order_seq_cst);
        }

        /// Ready when an item is there (even for a cancelled task), or when the channel is closed and empty.
        bool await_ready() noexcept {
            switch (s_->ring.try_pop(item_)) {
            case shared_state::result::ok: {
                st_ = wstate::granted;
                detail::channel_waiter* sender = nullptr;
                detail::channel_waiter* receiver = nullptr;
                s_->template after_pop<send_awaitable>(sender, receiver);
                fire(sender);
                fire(receiver);
                return true;
            }
            case shared_state::result::closed:
                st_ = wstate::closed;
                return true;
            default:
                return false;
            }
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            ctx_ = detail::context_of(h);
            if (ctx_ && ctx_->requested) {
                st_ = wstate::cancelled;
                return false;
            }
            prepare(h, "coring::channel::receive");
            keep_ = s_->shared_from_this();
            detail::channel_waiter* wake = nullptr;
            {
                std::unique_lock<std::mutex> lock(s_->mutex);
                if (s_->receiver) {
                    lock.unlock();
                    unprepare();
                    throw std::logic_error(
                        "coring: channel::receive: another receive is already waiting on this channel");
                }
                if (!take_or_park(wake)) {
                    parked_ = true;
                    s_->receiver = this; // publish last (senders take it only when receiver_parked, under the mutex)
                    return true;
                }
            }
            unprepare();
            fire(wake);
            return false;
        }
        /// The oldest item; std::nullopt once the channel is closed and empty. Throws cancelled_error when the task
        /// was cancelled while it waited (it took nothing).
        std::optional<T> await_resume() {
            switch (st_) {
            case wstate::cancelled:
                throw cancelled_error();
            case wstate::granted:
                return std::move(item_);
            default:
                return std::nullopt;
            }
        }

    private:
        // Under the mutex: announces the wait, then takes an item (and admits a waiting sender into the freed slot,
        // to be fired) or sees the channel closed and empty. False, with st_ waiting and receiver_parked set, when
        // there is nothing to do but wait: a push either lands before the pop here and is found, or sees
        // receiver_parked and (under the mutex, so after this waiter is linked) wakes it. The receiver itself cannot
        // be notified here, so admitting needs no notify.
        bool take_or_park(detail::channel_waiter*& wake) noexcept {
            s_->receiver_parked.store(true, std::memory_order_seq_cst);
            switch (s_->ring.try_pop(item_)) {
            case shared_state::result::ok:
                s_->receiver_parked.store(false, std::memory_order_seq_cst);
                wake = s_->template admit_sender<send_awaitable>();
                st_ = wstate::granted;
                return true;
            case shared_state::result::closed:
                s_->receiver_parked.store(false, std::memory_order_seq_cst);
                st_ = wstate::closed;
                return true;
            default:
                st_ = wstate::waiting;
                return false;
            }
        }

        // Home thread: notified (an item came, or the channel closed). Retries here, on its own thread, so that a
        // receiver cancelled meanwhile takes nothing; finds nothing (another thread's try_receive took it) and waits
        // on.
        static void on_wake(detail::channel_waiter* w) noexcept {
            auto* self = static_cast<receive_awaitable*>(w);
            detail::channel_waiter* wake = nullptr;
            {
                std::lock_guard<std::mutex> lock(self->s_->mutex);
                if (self->cancel_seen_) self->st_ = wstate::cancelled;
                else if (!self->take_or_park(wake)) return; // waits on
                self->s_->receiver = nullptr;
            }
            self->finish();
            fire(wake);
        }
        // Home thread, from cancel_context::request().
        static void on_cancel(detail::cancel_point* c) noexcept {
            auto* self = static_cast<receive_awaitable*>(c);
            {
                std::lock_guard<std::mutex> lock(self->s_->mutex);
                if (self->st_ == wstate::notified) {
                    self->cancel_seen_ = true; // on_wake, on its way, ends it
                    return;
                }
                if (self->st_ != wstate::waiting) return;
                self->s_->receiver = nullptr;
                self->s_->receiver_parked.store(false, std::memory_order_seq_cst);
                self->st_ = wstate::cancelled;
            }
            self->finish();
        }

        shared_state* s_;       // kept alive by the handle it came from, and by keep_ while parked
        std::optional<T> item_; // what this receive took
    };

    /// Puts `item` into the channel, waiting while it is full (behind the senders already waiting). A cancellation
    /// point while it waits (see the class comment). Throws channel_closed when the channel is or gets closed before
    /// the item is in; std::logic_error when it would wait on a thread without an event loop.
    [[nodiscard]] send_awaitable send(T item) const noexcept { return send_awaitable(s_.get(), std::move(item)); }

    /// Takes the oldest item, waiting while the channel is empty; std::nullopt once it is closed and empty. A
    /// cancellation point while it waits (nothing is taken then). Throws std::logic_error when another receive()
    /// already waits on this channel, or when it would wait on a thread without an event loop.
    [[nodiscard]] receive_awaitable receive() const noexcept { return receive_awaitable(s_.get()); }

    /// Enqueues `item` if there is room and no sender waits; never waits. Returns false, with `item` untouched, when
    /// the channel is full or closed. Any thread.
    bool try_send(T&& item) const noexcept {
        if (s_->senders_waiting.load(std::memory_order_seq_cst) != 0) return false; // they go first
        if (s_->ring.try_push(item) != shared_state::result::ok) return false;
        detail::channel_waiter::fire(s_->after_push());
        return true;
    }

    /// Takes the oldest item if there is one; never waits. std::nullopt when the channel is empty. Any thread.
    [[nodiscard]] std::optional<T> try_receive() const noexcept {
        std::optional<T> out;
        if (s_->ring.try_pop(out) != shared_state::result::ok) return out;
        detail::channel_waiter* sender = nullptr;
        detail::channel_waiter* receiver = nullptr;
        s_->template after_pop<send_awaitable>(sender, receiver);
        detail::channel_waiter::fire(sender);
        detail::channel_waiter::fire(receiver);
        return out;
    }

    /// Closes the channel: every waiting sender fails with channel_closed (its item not enqueued), the waiting
    /// receiver wakes, later sends fail, and receive() returns std::nullopt once the buffer is empty. Idempotent; any
    /// thread, including one with no event loop.
    void close() const noexcept {
        detail::wait_list senders;
        detail::channel_waiter* receiver = nullptr;
        {
            std::lock_guard<std::mutex> lock(s_->mutex);
            if (s_->closed) return;
            s_->closed = true;
            s_->ring.close();
            s_->senders_waiting.store(0, std::memory_order_seq_cst);
            while (!s_->senders.empty()) {
                auto* w = static_cast<detail::channel_waiter*>(s_->senders.pop_front());
                w->st_ = wstate::closed;
                senders.push_back(w);
            }
            receiver = s_->notify_receiver();
        }
        // Each waiter is ours until fired; unlink it before, since firing may end its frame.
        while (!senders.empty())
            detail::channel_waiter::fire(static_cast<detail::channel_waiter*>(senders.pop_front()));
        detail::channel_waiter::fire(receiver);
    }

    /// Whether close() was called.
    [[nodiscard]] bool closed() const noexcept { return s_->ring.closed(); }
    /// The capacity the channel was made with.
    [[nodiscard]] std::size_t capacity() const noexcept { return s_->ring.capacity(); }

private:
    static std::shared_ptr<shared_state> make_state(std::size_t capacity) {
        if (capacity == 0) throw std::invalid_argument("coring: channel capacity must be at least 1");
        // The ring's indexes keep a mark bit and a lap count above the slot index.
        if (capacity > (std::numeric_limits<std::size_t>::max() >> 4))
            throw std::invalid_argument("coring: channel capacity too large");
        return std::make_shared<shared_state>(capacity);
    }

    std::shared_ptr<shared_state> s_;
};

} // namespace coring
