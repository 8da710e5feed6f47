#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/op.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/error.hpp>
#include <coring/runtime/event_loop.hpp>

#include <liburing.h>

#include <cerrno>
#include <concepts>
#include <coroutine>
#include <system_error>
#include <type_traits>
#include <utility>

namespace coring {

/// The awaitable of submit(): one io_uring operation whose state lives in the awaiting frame.
template <class Prep>
class [[nodiscard]] submit_awaitable : detail::op_base, detail::cancel_point {
public:
    /// Made by submit(); `prep` is kept until it fills the SQE.
    explicit submit_awaitable(Prep prep) noexcept(std::is_nothrow_move_constructible_v<Prep>)
        : detail::op_base(&do_prep, &do_complete),
          detail::cancel_point{&detail::cancel_ops_of<&on_cancel>},
          prep_(std::move(prep)) {}
    /// Movable only before it is awaited.
    submit_awaitable(submit_awaitable&& o) noexcept(std::is_nothrow_move_constructible_v<Prep>)
        : submit_awaitable(std::move(o.prep_)) {}
    submit_awaitable& operator=(submit_awaitable&&) = delete;

    bool await_ready() const noexcept { return false; }

    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        ctx_ = detail::context_of(h);
        if (ctx_ && ctx_->requested) {
            cancelled_ = true;
            return false;
        }
        loop_ = &event_loop::current();
        if (loop_->backend() != backend::io_uring)
            throw std::system_error(ENOTSUP, std::system_category(),
                                    "coring: submit() needs the io_uring backend, and this loop runs on epoll "
                                    "(io_uring is unavailable here, or CORING_BACKEND=epoll)");
        h_ = h;
        loop_->start(this);
        if (ctx_) ctx_->point = this;
        return true;
    }

    /// The completion's res (a negative errno on failure, as the kernel reports it). Throws cancelled_error when the
    /// task was cancelled and the kernel stopped the operation; an operation that completed anyway returns its result.
    int await_resume() const {
        if (cancelled_) throw cancelled_error();
        return res_;
    }

private:
    static void do_prep(detail::op_base* op, io_uring_sqe* sqe) noexcept {
        auto* self = static_cast<submit_awaitable*>(op);
        self->prep_(sqe);
        // Links would tie someone else's next SQE to this one, and a skipped success CQE would never resume us.
        sqe->flags &= static_cast<__u8>(~(IOSQE_IO_LINK | IOSQE_IO_HARDLINK | IOSQE_CQE_SKIP_SUCCESS));
    }

    static void do_complete(detail::op_base* op, int res, unsigned flags) noexcept {
        auto* self = static_cast<submit_awaitable*>(op);
        if (flags & IORING_CQE_F_MORE) {
            // A multishot operation: keep its first result and stop it; the final CQE resumes us.
            if (!self->more_) {
                self->more_ = true;
                self->res_ = res;
                self->loop_->cancel(self);
            }
            return;
        }
        if (!self->more_) self->res_ = res;
        if (self->ctx_) {
            self->ctx_->point = nullptr;
            if (self->ctx_->requested && !self->more_ && (res == -ECANCELED || res == -EINTR)) self->cancelled_ = true;
        }
        self->loop_->schedule(self->h_);
    }

    static void on_cancel(detail::cancel_point* c) noexcept {
        auto* self = static_cast<submit_awaitable*>(c);
        self->loop_->cancel(self);
    }

    Prep prep_;                             // fills the SQE; may run after await_suspend returned (full queue)
    event_loop* loop_ = nullptr;            // set when awaited
    detail::cancel_context* ctx_ = nullptr; // the awaiting chain's cancellation state
    std::coroutine_handle<> h_{};           // resumed once, from the final CQE
    int res_ = 0;                           // the CQE's res
    bool more_ = false;                     // saw a CQE with IORING_CQE_F_MORE
    bool cancelled_ = false;                // ended by cancellation
};

/// Any io_uring operation as an awaitable (the escape hatch): `prep` fills the SQE (an io_uring_prep_* call) and
/// `co_await` yields the completion's res. Cancellable like coring's own operations (IORING_OP_ASYNC_CANCEL).
///
/// `prep` must not throw and may run after the co_await began (when the submission queue was full); anything it
/// points the kernel at must live until the co_await ends. The loop owns user_data, so prep's value is replaced;
/// IOSQE_IO_LINK, IOSQE_IO_HARDLINK and IOSQE_CQE_SKIP_SUCCESS are cleared. A multishot operation is stopped after
/// its first completion, whose res is returned.
///
/// GCC 12 destroys twice each capture of a lambda written inside a co_await expression (PR 100611), in the calling
/// coroutine, whatever submit does with the closure: with GCC 12, a prep whose captures own something (a string, a
/// buffer) is bound to a named local first, then `co_await submit(std::move(prep))`.
template <class Prep>
    requires std::invocable<Prep&, io_uring_sqe*>
[[nodiscard]] submit_awaitable<std::decay_t<Prep>> submit(Prep&& prep) {
    return submit_awaitable<std::decay_t<Prep>>(std::forward<Prep>(prep));
}

} // namespace coring
