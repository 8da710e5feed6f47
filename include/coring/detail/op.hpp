#pragma once

#include <liburing.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace coring::detail {

/// An io_uring operation awaited by a coroutine: the record whose address is the SQE's user_data.
///
/// Lifecycle (state_ says where an operation is):
/// - idle: not started.
/// - queued: no SQE could be had (the submission queue was full and could not be flushed); the op waits in the
///   loop's pending list and is prepared at the top of the next turn, in order. Cancelling it now completes it
///   with -ECANCELED at once: nothing reached the kernel.
/// - submitted: the kernel owns the SQE and everything it points to.
/// - cancel_queued / cancelling: cancellation was requested; an IORING_OP_ASYNC_CANCEL is waiting for an SQE or was
///   sent. The cancel's own CQE (0, -ENOENT, -EALREADY) only tells what the kernel did; it ends nothing.
/// - completed: the op's own final CQE (one without IORING_CQE_F_MORE) has been dispatched. Whatever it reports (a
///   result, -ECANCELED, -EINTR, an error) is delivered, and the coroutine is resumed exactly once, from it.
///
/// Invariant: no memory the kernel may still write to is freed before the operation's final CQE has arrived. An op
/// lives in the awaiting coroutine's frame (no allocation per operation), and a frame suspended on an op is never
/// destroyed: tasks are destroyed only when finished, and the loop's teardown cancels and drains before it destroys
/// anything, leaking (never freeing) whatever the kernel still holds when its timeout expires. ~op_base checks it.
class op_base {
public:
    enum class state : std::uint8_t { idle, queued, submitted, cancel_queued, cancelling, completed };

    using prep_fn = void (*)(op_base*, io_uring_sqe*) noexcept;
    using complete_fn = void (*)(op_base*, int res, unsigned flags) noexcept;

    op_base(prep_fn prep, complete_fn complete) noexcept : prep_(prep), complete_(complete) {}
    op_base(const op_base&) = delete;
    op_base& operator=(const op_base&) = delete;
    ~op_base() {
        if (in_kernel()) {
            std::fputs("coring: fatal: an operation's memory was about to be freed while the kernel still owned it\n",
                       stderr);
            std::abort();
        }
    }

    /// True from submission until the final CQE: the kernel may still use the operation's memory.
    [[nodiscard]] bool in_kernel() const noexcept {
        return state_ == state::submitted || state_ == state::cancel_queued || state_ == state::cancelling;
    }
    [[nodiscard]] state current_state() const noexcept { return state_; }

    // Public because the loop, the pending list and the awaitables built on op_base all drive the state machine.
    prep_fn prep_;            // fills the SQE; may run later than start() when the queue was full
    complete_fn complete_;    // called for every CQE of this op (final or with F_MORE); must not resume inline
    op_base* prev_ = nullptr; // links in the loop's pending list, or (epoll) in its descriptor's waiters
    op_base* next_ = nullptr;
    state state_ = state::idle;
    // The epoll backend: the descriptor whose readiness a submitted operation waits for (-1: it is not waiting), and
    // which direction. prep_ is called again for every attempt there, so it must be repeatable for the opcodes that
    // backend performs (it is for all of coring's: they fill the SQE from the awaiter's current state).
    bool park_out_ = false;
    // The epoll backend may perform this operation inside start() and complete it there (io_op handles that).
    bool inline_ok_ = false;
    int park_fd_ = -1;
};

/// FIFO of operations waiting for an SQE, either to be submitted or to have their cancellation sent.
class pending_list {
public:
    [[nodiscard]] bool empty() const noexcept { return !head_; }
    [[nodiscard]] op_base* front() const noexcept { return head_; }
    void push_back(op_base* op) noexcept {
        op->next_ = nullptr;
        op->prev_ = tail_;
        if (tail_) tail_->next_ = op;
        else head_ = op;
        tail_ = op;
    }
    void erase(op_base* op) noexcept {
        if (op->prev_) op->prev_->next_ = op->next_;
        else head_ = op->next_;
        if (op->next_) op->next_->prev_ = op->prev_;
        else tail_ = op->prev_;
        op->prev_ = op->next_ = nullptr;
    }

private:
    op_base* head_ = nullptr;
    op_base* tail_ = nullptr;
};

} // namespace coring::detail
