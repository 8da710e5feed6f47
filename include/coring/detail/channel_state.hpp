#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/mailbox.hpp>
#include <coring/detail/wait_list.hpp>
#include <coring/runtime/event_loop.hpp>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

namespace coring::detail {

/// The part of a channel waiter (a suspended send or receive) that the other side of the channel touches: its state,
/// and how to wake it on its own loop.
///
/// Thread rules: `h_`, `ctx_`, `home_`, `box_` and the item are written by the home thread before the waiter is linked
/// (publish last) and do not change while it is; `st_` changes only under the channel's mutex. A waker takes the
/// waiter out of the channel under the mutex (setting `st_`) and then, with the mutex released, calls fire(): from
/// then on only the home thread touches the waiter again, once the wake has run there.
struct channel_waiter : cancel_point, wait_node {
    enum class state : std::uint8_t {
        idle,      // not suspended (or never was)
        waiting,   // linked in the channel
        notified,  // a receiver taken out to retry on its loop (its wake is on the way)
        granted,   // a sender's item is in the buffer, or a receiver has its item
        closed,    // the channel was closed under it (or before it)
        cancelled, // cancelled while linked, or before it would have waited
    };

    /// Run on the home thread once the waiter was taken out of the channel (directly when the waker is on the same
    /// loop, else from the mailbox).
    using wake_fn = void (*)(channel_waiter*) noexcept;

    struct wake_item : remote_item {
        channel_waiter* self = nullptr;
    };

    channel_waiter(void (*cancel)(cancel_point*) noexcept, wake_fn on_wake) noexcept
        : cancel_point{cancel}, on_wake_(on_wake) {
        item_.self = this;
        item_.run = [](remote_item* it) noexcept {
            channel_waiter* w = static_cast<wake_item*>(it)->self;
            w->on_wake_(w);
        };
    }
    channel_waiter(const channel_waiter&) = delete;
    channel_waiter& operator=(const channel_waiter&) = delete;

    /// Home thread, before linking: announces the remote wake-up to the loop (it keeps its inbox read armed and
    /// does not report a deadlock meanwhile) and records where to wake. Throws std::logic_error without a loop.
    template <class P>
    void prepare(std::coroutine_handle<P> h, const char* what) {
        (void)require_core(what);
        event_loop& home = event_loop::current();
        home.remote_begin();
        home_ = &home;
        box_ = home.remote();
        h_ = h;
        if (ctx_) ctx_->point = this;
    }
    /// Home thread: prepare() undone, for a wait that turned out not to be needed.
    void unprepare() noexcept {
        if (ctx_ && ctx_->point == this) ctx_->point = nullptr;
        home_->remote_end();
        parked_ = false;
    }
    /// Home thread: the wait is over (st_ says how); queue the coroutine.
    void finish() noexcept {
        unprepare();
        home_->schedule(h_);
    }

    /// Waker, mutex released, waiter already taken out of the channel: wakes it on its own loop. Never resumes or
    /// schedules a frame of another loop from this thread.
    static void fire(channel_waiter* w) noexcept {
        if (!w) return;
        if (event_loop::try_current() == w->home_) return w->on_wake_(w);
        // Our own reference: once posted, the waiter may resume and free its copy (and its loop go) before post()
        // has finished with the mailbox.
        std::shared_ptr<mailbox> box = w->box_;
        // A refused post means the waiter's loop is gone; it leaked the frame, and nobody waits any more.
        (void)box->post(&w->item_);
    }

    std::coroutine_handle<> h_{};
    cancel_context* ctx_ = nullptr;
    event_loop* home_ = nullptr;
    std::shared_ptr<mailbox> box_;
    wake_item item_;
    wake_fn on_wake_;
    state st_ = state::idle;   // under the channel's mutex while the waiter is out of its home thread's hands
    bool cancel_seen_ = false; // under the mutex: a receiver was cancelled after it was notified
    bool parked_ = false;      // home thread: between prepare() and finish()/unprepare()
};

/// The shared state behind channel<T> handles: a fixed ring of `capacity` slots allocated once, the waiting senders
/// (FIFO) and the one waiting receiver, all under one std::mutex (see channel<T> for what it protects and why).
template <class T>
class channel_state {
public:
    explicit channel_state(std::size_t capacity) : slots_(std::allocator<T>().allocate(capacity)), cap_(capacity) {}
    channel_state(const channel_state&) = delete;
    channel_state& operator=(const channel_state&) = delete;
    /// The last handle (or parked waiter) went: the items never received are destroyed here.
    ~channel_state() {
        while (count_ > 0) (void)pop();
        std::allocator<T>().deallocate(slots_, cap_);
    }

    [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }

    std::mutex mutex;

    // ---- Under `mutex`. ----

    [[nodiscard]] bool full() const noexcept { return count_ == cap_; }
    [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
    void push(T&& v) noexcept {
        std::construct_at(slots_ + (head_ + count_) % cap_, std::move(v));
        ++count_;
    }
    T pop() noexcept {
        T* p = slots_ + head_;
        T out(std::move(*p));
        std::destroy_at(p);
        head_ = (head_ + 1) % cap_;
        --count_;
        return out;
    }

    /// A sender may go straight into the buffer: room, and no sender waiting before it.
    [[nodiscard]] bool sender_may_enter() const noexcept { return !full() && senders.empty(); }

    /// After a push: takes out the receiver if it waits, for the caller to fire() once the mutex is released.
    channel_waiter* notify_receiver() noexcept {
        if (!receiver || receiver->st_ != channel_waiter::state::waiting) return nullptr;
        receiver->st_ = channel_waiter::state::notified;
        return receiver;
    }

    /// After a pop: moves the oldest waiting sender's item into the freed slot (the grant) and takes it out, for the
    /// caller to fire(). Senders wait only while the buffer is full, so this keeps their FIFO order.
    template <class Sender>
    channel_waiter* admit_sender() noexcept {
        if (senders.empty() || full()) return nullptr;
        auto* s = static_cast<Sender*>(static_cast<channel_waiter*>(senders.pop_front()));
        push(std::move(s->item_));
        s->st_ = channel_waiter::state::granted;
        return s;
    }

    wait_list senders;                  // channel_waiters suspended in send(), oldest first; only while full
    channel_waiter* receiver = nullptr; // the receive between its first wait and its end (waiting or notified)
    bool closed = false;

private:
    T* slots_;              // cap_ slots, count_ of them alive from head_ on (wrapping)
    std::size_t cap_;       // exact, at least 1
    std::size_t head_ = 0;  // slot of the oldest item
    std::size_t count_ = 0; // items alive
};

} // namespace coring::detail
