#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/mailbox.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/detail/wait_list.hpp>
#include <coring/runtime/event_loop.hpp>

#include <atomic>
#include <bit>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
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

    channel_waiter(const cancel_ops* ops, wake_fn on_wake) noexcept : cancel_point{ops}, on_wake_(on_wake) {
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
        // The same loop, and not a later loop built at a freed loop's address (a waiter leaked by a failed drain):
        // the waiter's own reference keeps its mailbox's address from being reused.
        if (event_loop* here = event_loop::try_current(); here == w->home_ && here->remote() == w->box_)
            return w->on_wake_(w);
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
    std::shared_ptr<void> keep_; // the channel's state, from the first wait on: handles may all go meanwhile
    wake_item item_;
    wake_fn on_wake_;
    state st_ = state::idle;   // under the channel's mutex while the waiter is out of its home thread's hands
    bool cancel_seen_ = false; // under the mutex: a receiver was cancelled after it was notified
    bool parked_ = false;      // home thread: between prepare() and finish()/unprepare()
};

/// The bounded buffer of a channel: crossbeam-channel's array flavour, lock-free, multi-producer and multi-consumer,
/// with exactly `capacity` slots allocated once.
///
/// Each slot has a stamp saying whose turn it is: `tail + 1` once a sender has written it, `head + one_lap` once a
/// receiver has emptied it. `head` and `tail` are indexes with a lap count above them; `tail` also carries the mark
/// bit that close() sets, after which no push can succeed, so "closed and empty" is final.
///
/// Orderings: claiming a slot (the CAS on head or tail) and every load of the other end are seq_cst, the slot stamps
/// acquire/release; no fences (ThreadSanitizer models none). The seq_cst accesses are also half of the channel's
/// Dekker checks against `senders_waiting` and `receiver_parked` (see channel_state).
template <class T>
class channel_ring {
public:
    enum class result : std::uint8_t { ok, full, empty, closed };

    explicit channel_ring(std::size_t capacity)
        : cap_(capacity),
          mark_(std::bit_ceil(capacity + 1)),
          one_lap_(mark_ * 2),
          slots_(std::allocator<slot>().allocate(capacity)) {
        for (std::size_t i = 0; i < cap_; ++i) std::construct_at(slots_ + i, i);
    }
    channel_ring(const channel_ring&) = delete;
    channel_ring& operator=(const channel_ring&) = delete;
    /// Destroys the items never taken (no other thread can be here any more).
    ~channel_ring() {
        std::optional<T> v;
        while (try_pop(v) == result::ok) v.reset();
        std::destroy(slots_, slots_ + cap_);
        std::allocator<slot>().deallocate(slots_, cap_);
    }

    [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }

    /// Moves `v` in if there is room: ok (v moved from), full or closed (v untouched).
    result try_push(T& v) noexcept {
        std::size_t tail = tail_.load(std::memory_order_seq_cst);
        for (unsigned spins = 0;; backoff(spins)) {
            if (tail & mark_) return result::closed;
            const std::size_t index = tail & (mark_ - 1);
            const std::size_t lap = tail & ~(one_lap_ - 1);
            slot& s = slots_[index];
            const std::size_t stamp = s.stamp.load(std::memory_order_acquire);
            if (tail == stamp) {
                const std::size_t next = index + 1 < cap_ ? tail + 1 : lap + one_lap_;
                if (tail_.compare_exchange_weak(tail, next, std::memory_order_seq_cst, std::memory_order_seq_cst)) {
                    std::construct_at(s.item(), std::move(v));
                    s.stamp.store(tail + 1, std::memory_order_release);
                    return result::ok;
                }
                continue; // `tail` reloaded by the failed CAS
            }
            if (stamp + one_lap_ == tail + 1) {
                // The slot still holds last lap's item: full, unless a receiver is between its CAS and its stamp.
                if (head_.load(std::memory_order_seq_cst) + one_lap_ == tail) return result::full;
            }
            tail = tail_.load(std::memory_order_seq_cst);
        }
    }

    /// Moves the oldest item into `out` if there is one: ok, empty, or closed (closed and empty: final).
    result try_pop(std::optional<T>& out) noexcept {
        std::size_t head = head_.load(std::memory_order_seq_cst);
        for (unsigned spins = 0;; backoff(spins)) {
            const std::size_t index = head & (mark_ - 1);
            const std::size_t lap = head & ~(one_lap_ - 1);
            slot& s = slots_[index];
            const std::size_t stamp = s.stamp.load(std::memory_order_acquire);
            if (head + 1 == stamp) {
                const std::size_t next = index + 1 < cap_ ? head + 1 : lap + one_lap_;
                if (head_.compare_exchange_weak(head, next, std::memory_order_seq_cst, std::memory_order_seq_cst)) {
                    T* p = s.item();
                    out.emplace(std::move(*p));
                    std::destroy_at(p);
                    s.stamp.store(head + one_lap_, std::memory_order_release);
                    return result::ok;
                }
                continue;
            }
            if (stamp == head) {
                // Not written this lap: empty, unless a sender is between its CAS and its stamp.
                const std::size_t tail = tail_.load(std::memory_order_seq_cst);
                if ((tail & ~mark_) == head) return tail & mark_ ? result::closed : result::empty;
            }
            head = head_.load(std::memory_order_seq_cst);
        }
    }

    /// Refuses every later push. Idempotent.
    void close() noexcept { tail_.fetch_or(mark_, std::memory_order_seq_cst); }
    [[nodiscard]] bool closed() const noexcept { return (tail_.load(std::memory_order_seq_cst) & mark_) != 0; }

private:
    struct slot {
        explicit slot(std::size_t s) noexcept : stamp(s) {}
        std::atomic<std::size_t> stamp;
        alignas(T) unsigned char storage[sizeof(T)];
        T* item() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
    };

    // Another thread is between claiming a slot and stamping it (a few instructions, unless it was preempted there).
    static void backoff(unsigned& spins) noexcept {
        if (++spins > 64) std::this_thread::yield();
    }

    const std::size_t cap_;
    const std::size_t mark_;    // the closed bit of tail_, just above the index bits
    const std::size_t one_lap_; // one lap, above the mark bit
    slot* const slots_;
    alignas(64) std::atomic<std::size_t> head_{0}; // receivers' end, on a cache line of its own
    alignas(64) std::atomic<std::size_t> tail_{0}; // senders' end, and the mark bit
};

/// The shared state behind channel<T> handles: the lock-free ring, and the waiters behind a std::mutex.
///
/// The fast path (a push with no sender waiting, a pop with no sender waiting, nobody to wake) takes no lock. The
/// mutex guards the waiting senders (FIFO), the one waiting receiver, every waiter's state and the closed flag; it is
/// taken to wait, to wake, to cancel, to admit a waiting sender and to close. Two Dekker pairs tell the fast path when
/// it must take it, all seq_cst: a pusher claims its slot and then reads `receiver_parked`, a receiver about to wait
/// sets it and then tries a pop; a popper frees a slot and then reads `senders_waiting`, a sender about to wait bumps
/// it and then tries a push. Either the waiter sees the other's item (or room), or the other sees the waiter.
template <class T>
class channel_state : public std::enable_shared_from_this<channel_state<T>> {
    using wstate = channel_waiter::state;

public:
    using result = typename channel_ring<T>::result;

    explicit channel_state(std::size_t capacity) : ring(capacity) {}

    channel_ring<T> ring;
    std::mutex mutex;
    std::atomic<std::size_t> senders_waiting{0}; // senders linked, or about to link (set under the mutex)
    std::atomic<bool> receiver_parked{false};    // the receiver waits and no wake is on its way (set under the mutex)

    // ---- Under `mutex`. ----
    wait_list senders;                  // channel_waiters suspended in send(), oldest first
    channel_waiter* receiver = nullptr; // the receive between its first wait and its end (waiting or notified)
    bool closed = false;

    /// Takes out the receiver if it waits, for the caller to fire() once the mutex is released.
    channel_waiter* notify_receiver() noexcept {
        if (!receiver || receiver->st_ != wstate::waiting) return nullptr;
        receiver->st_ = wstate::notified;
        receiver_parked.store(false, std::memory_order_seq_cst);
        return receiver;
    }

    /// Moves the oldest waiting sender's item into the buffer (the grant) and takes it out, for the caller to fire().
    /// Null when nobody waits, or when the room is gone (a sender that had not seen the waiters took it: the next pop
    /// admits).
    template <class Sender>
    channel_waiter* admit_sender() noexcept {
        if (senders.empty()) return nullptr;
        auto* s = static_cast<Sender*>(static_cast<channel_waiter*>(senders.front()));
        if (ring.try_push(s->item_) != result::ok) return nullptr;
        senders.pop_front();
        senders_waiting.fetch_sub(1, std::memory_order_seq_cst);
        s->st_ = wstate::granted;
        return s;
    }

    // ---- Without the mutex. ----

    /// After a push: the receiver to fire, if it waits.
    channel_waiter* after_push() noexcept {
        if (!receiver_parked.load(std::memory_order_seq_cst)) return nullptr;
        std::lock_guard<std::mutex> lock(mutex);
        return notify_receiver();
    }

    /// After a pop: admits the oldest waiting sender into the freed room; `sender` and `receiver` (that item may wake
    /// a receiver waiting meanwhile) are for the caller to fire().
    template <class Sender>
    void after_pop(channel_waiter*& sender, channel_waiter*& receiver_out) noexcept {
        if (senders_waiting.load(std::memory_order_seq_cst) == 0) return;
        std::lock_guard<std::mutex> lock(mutex);
        sender = admit_sender<Sender>();
        if (sender) receiver_out = notify_receiver();
    }
};

} // namespace coring::detail
