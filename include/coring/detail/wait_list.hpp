#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/detail/owner_check.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/detail/task_trace.hpp>

#include <coroutine>
#include <cstdint>
#include <string>

namespace coring::detail {

/// A link of a wait_list. It lives inside the awaiter, hence in the waiting coroutine's frame: waiting allocates
/// nothing. Null links mean "not in any list".
struct wait_node {
    wait_node* prev_ = nullptr;
    wait_node* next_ = nullptr;

    [[nodiscard]] bool linked() const noexcept { return next_ != nullptr; }

    /// Leaves whatever list the node is in. A circular list with a sentinel needs no pointer to the list for this,
    /// which is what lets a cancelled waiter (that only knows itself) leave it.
    void unlink() noexcept {
        prev_->next_ = next_;
        next_->prev_ = prev_;
        prev_ = next_ = nullptr;
    }
};

/// FIFO of waiters of one synchronisation primitive: an intrusive circular doubly-linked list around a sentinel.
/// Pushing, popping and removing from the middle (cancellation) are O(1) and never allocate.
///
/// The sentinel points at itself, so the list (and the primitive holding it) can be neither copied nor moved.
class wait_list {
public:
    wait_list() noexcept = default;
    wait_list(const wait_list&) = delete;
    wait_list& operator=(const wait_list&) = delete;
    /// A primitive destroyed while tasks still wait on it (a misuse) orphans them instead of leaving them pointing
    /// into freed memory: they stay suspended until cancelled (run() cancels what is left at its end).
    ~wait_list() {
        while (!empty()) (void)pop_front();
    }

    [[nodiscard]] bool empty() const noexcept { return head_.next_ == &head_; }
    /// The oldest waiter; the list must not be empty.
    [[nodiscard]] wait_node* front() const noexcept { return head_.next_; }

    void push_back(wait_node* n) noexcept {
        n->prev_ = head_.prev_;
        n->next_ = &head_;
        head_.prev_->next_ = n;
        head_.prev_ = n;
    }
    /// Unlinks and returns the oldest waiter; the list must not be empty.
    wait_node* pop_front() noexcept {
        wait_node* n = head_.next_;
        n->unlink();
        return n;
    }

    /// The loop whose tasks wait here now (CORING_CHECKS): stamped by a wait that finds the list empty, compared by
    /// every other. A primitive may serve one loop after another, never two at once.
    loop_core* home_ = nullptr;

private:
    wait_node head_{&head_, &head_}; // sentinel: next_ is the oldest waiter, prev_ the newest
};

/// The common part of every awaiter that waits on a synchronisation primitive (mutex, semaphore, event, queue):
/// its place in the primitive's wait list, the waiting coroutine and how the wait ended.
///
/// Protocol, all on the loop's thread:
/// - suspend(): the awaiter links itself into the list and becomes the waiting chain's cancel point; a chain that is
///   already cancelled does not wait (level-triggered cancellation) and gets `cancelled`.
/// - The primitive ends a wait by unlinking the waiter, handing it what it waited for (the lock, a permit, an item)
///   and calling wake(): from that moment the grant is the waiter's, whatever happens to its task.
/// - on_cancel (a cancellation request while still linked) unlinks it and ends the wait with `cancelled`; the
///   primitive's state is untouched, because nothing was granted to it.
/// Both queue the coroutine on the loop and never resume it inline. Because the cancel point is cleared when the
/// waiter is woken, a cancellation that arrives between the grant and the resumption finds no cancel point: the grant
/// wins, so no wake-up is lost (B-11 in the pitfalls) and the task meets its cancellation at its next wait.
class waiter : public cancel_point, public wait_node {
public:
    enum class outcome : std::uint8_t {
        waiting,   // not woken yet (or never suspended)
        granted,   // woken with what it waited for
        cancelled, // its task was cancelled while it waited, or before it would have waited
        closed     // the primitive was closed under it (queue::close)
    };

    waiter() noexcept : cancel_point{&cancel_ops_of<&on_cancel, &describe>} {}
    /// Copying makes a fresh waiter: an awaitable may be moved (into a spawned task's frame) before it is awaited,
    /// never while it waits.
    waiter(const waiter&) noexcept : waiter() {}
    waiter& operator=(const waiter&) = delete;
    /// A waiter destroyed while still linked (its frame destroyed while suspended: not something coring does, but
    /// harmless this way) leaves the list and its chain's cancel point.
    ~waiter() {
        if (!linked()) return;
        unlink();
        if (ctx_ && ctx_->point == this) ctx_->point = nullptr;
    }

    /// Links the waiter at the end of `list` and makes it the cancel point of `h`'s chain. Returns false, with
    /// outcome `cancelled`, when that chain was already cancelled: the caller must then not suspend. Throws
    /// std::logic_error (naming `what`) when the thread has no event loop to resume the waiter on.
    template <class P>
    bool suspend(wait_list& list, std::coroutine_handle<P> h, const char* what) {
        ctx_ = context_of(h);
        if (ctx_ && ctx_->requested) {
            outcome_ = outcome::cancelled;
            return false;
        }
        loop_core& core = require_core(what);
        if constexpr (checks) {
            if (list.empty()) list.home_ = &core;
            else if (list.home_ != &core)
                throw_sharing_violation(std::string(what) + ": waited on from two event loops at once");
        }
        home_ = &core;
        h_ = h;
        what_ = what;
        list.push_back(this);
        if (ctx_) ctx_->point = this;
        return true;
    }

    /// Ends the wait with `o`; the primitive has already unlinked the waiter (pop_front) and, for `granted`, handed
    /// over what was waited for. Queues the coroutine on the loop; never resumes it inline.
    void wake(outcome o) noexcept {
        if constexpr (checks)
            if (home_ != current_core)
                sharing_violation("a task waiting on a sync primitive was woken from another event loop's thread");
        outcome_ = o;
        if (ctx_ && ctx_->point == this) ctx_->point = nullptr;
        current_core->ready.push(h_);
    }

    [[nodiscard]] outcome result() const noexcept { return outcome_; }
    /// Records how an await that did not suspend ended (the awaiter did its work in await_ready).
    void set_result(outcome o) noexcept { outcome_ = o; }

    /// For task dumps: what the waiter waits for (a waiter that changes its cancel action keeps this).
    static void describe(const cancel_point* c, wait_note& n) {
        n.text = without_namespace(static_cast<const waiter*>(c)->what_);
    }

    /// The waiter behind a node popped from a wait_list (every node in a primitive's list is a waiter).
    [[nodiscard]] static waiter* from(wait_node* n) noexcept { return static_cast<waiter*>(n); }

private:
    static void on_cancel(cancel_point* c) noexcept {
        auto* self = static_cast<waiter*>(c);
        // The cancel point only while waiting (wake() clears it), but maybe no longer linked: orphaned by a primitive
        // destroyed under it.
        if (self->linked()) self->unlink();
        self->wake(outcome::cancelled);
    }

    std::coroutine_handle<> h_{};        // the waiting coroutine
    cancel_context* ctx_ = nullptr;      // its chain's cancellation state (null for foreign coroutines)
    loop_core* home_ = nullptr;          // the loop it waits on, the only one that may wake it (CORING_CHECKS)
    outcome outcome_ = outcome::waiting; // how the wait ended
    const char* what_ = "";              // what it waits for ("coring::mutex::lock"), for task dumps
};

} // namespace coring::detail
