#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/op.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/runtime/event_loop.hpp>

#include <liburing.h>

#include <cerrno>
#include <coroutine>

namespace coring::detail {

/// The base of coring's own I/O awaitables (socket reads and writes, accept, connect, ...): an operation that may
/// take several SQEs before the awaiting coroutine resumes (a write_all that the kernel completes in pieces), all
/// from one awaiter in the coroutine frame: no task, no allocation per operation.
///
/// `Derived` provides
///   void prep(io_uring_sqe*) noexcept   fill the SQE of the next step;
///   bool step(int res) noexcept         a step's CQE arrived; true when the operation is over (resume), false to
///                                       submit another step (prep is called again).
/// and reads `cancelled()` in its await_resume: true when the task was cancelled and the operation stopped for it,
/// possibly after some steps had done their work (a partial write, a partial read to give back to the stream).
/// A step may also park the operation (park() inside step(), then return false): nothing is submitted until the
/// derived calls unpark() (an accept waiting out EMFILE on a timer); a cancellation while parked calls the derived's
/// `void cancel_parked() noexcept` and ends the operation as cancelled.
/// The lifecycle of each step is op_base's; the coroutine is resumed exactly once, after the last step's CQE.
template <class Derived>
class io_op : public op_base, public cancel_point {
public:
    io_op() noexcept
        : op_base(&prep_thunk, &complete_thunk), cancel_point{&cancel_ops_of<&cancel_thunk, &describe_thunk>} {
        inline_ok_ = true;
    }
    /// Operations that never park need no cancel_parked of their own.
    void cancel_parked() noexcept {}
    io_op(const io_op&) noexcept : io_op() {} // a copy (a move before awaiting) is a fresh operation
    io_op& operator=(const io_op&) = delete;

    bool await_ready() const noexcept { return false; }

    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        ctx_ = context_of(h);
        if (ctx_ && ctx_->requested) {
            cancelled_ = true;
            return false;
        }
        loop_ = &event_loop::current();
        h_ = h;
        // On epoll the operation may be performed and finished inside start(): then there is nothing to wait for.
        starting_ = true;
        loop_->start(this);
        starting_ = false;
        if (done_inline_) {
            done_inline_ = false;
            return false;
        }
        if (ctx_) ctx_->point = this;
        return true;
    }

protected:
    /// The task was cancelled and the operation stopped for it.
    [[nodiscard]] bool cancelled() const noexcept { return cancelled_; }
    /// Starts the first step from await_suspend-like code of a derived awaiter that has its own fast path.
    event_loop* loop() const noexcept { return loop_; }

    /// Inside step(): do not submit the next step now; unpark() will.
    void park() noexcept { parked_ = true; }
    /// Submits the next step of a parked operation (or ends it, cancelled, if its task was cancelled meanwhile).
    void unpark() noexcept {
        parked_ = false;
        if (ctx_ && ctx_->requested) {
            cancelled_ = true;
            return finish();
        }
        loop_->start(this);
    }

private:
    static void prep_thunk(op_base* op, io_uring_sqe* sqe) noexcept { static_cast<Derived*>(op)->prep(sqe); }

    static void complete_thunk(op_base* op, int res, unsigned) noexcept {
        auto* self = static_cast<Derived*>(op);
        const bool requested = self->ctx_ && self->ctx_->requested;
        if (requested && (res == -ECANCELED || res == -EINTR)) {
            self->cancelled_ = true;
        } else if (!self->step(res)) {
            if (self->parked_) {
                if (!requested) return;
                // The task was cancelled while this step was in flight and the step parked anyway (the CQE was not
                // -ECANCELED: the cancel found the call already over). No cancel will come again: stop now rather
                // than when the park ends.
                self->parked_ = false;
                self->cancel_parked();
            } else if (!requested) {
                // More to do, unless the task has been cancelled meanwhile: then stop here, with what was done.
                return self->loop_->start(self);
            }
            self->cancelled_ = true;
        }
        self->finish();
    }

    void finish() noexcept {
        if (ctx_) ctx_->point = nullptr;
        if (starting_) {
            done_inline_ = true; // await_suspend resumes the awaiter by returning false
            return;
        }
        loop_->schedule(h_);
    }

    /// For task dumps: the derived awaiter's `describe_wait(std::string&) const` if it has one (a stream's reads and
    /// writes name the descriptor and the peer), else its type's name.
    static void describe_thunk(const cancel_point* c, wait_note& n) {
        const auto* self = static_cast<const Derived*>(static_cast<const io_op*>(c));
        if constexpr (requires(std::string & s) { self->describe_wait(s); }) self->describe_wait(n.text);
        else n.text = type_label(typeid(Derived));
    }

    static void cancel_thunk(cancel_point* c) noexcept {
        auto* self = static_cast<Derived*>(static_cast<io_op*>(c));
        if (self->parked_) {
            self->parked_ = false;
            self->cancel_parked();
            self->cancelled_ = true;
            return self->finish();
        }
        // An operation its loop leaked on purpose (still in the kernel when the loop's drain gave up) may be
        // cancelled later by its owner's destructor: the loop is gone then, and there is nothing left to ask.
        if (self->loop_ != current_loop) return;
        self->loop_->cancel(self);
    }

    event_loop* loop_ = nullptr;
    cancel_context* ctx_ = nullptr;
    std::coroutine_handle<> h_{};
    bool cancelled_ = false;
    bool parked_ = false;
    bool starting_ = false;    // inside await_suspend's start()
    bool done_inline_ = false; // the operation finished inside that start()
};

} // namespace coring::detail
