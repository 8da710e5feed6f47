#pragma once

// A stream's multishot receive (stream::enable_multishot) and the reads that wait on it. The two steps that reach into
// the stream itself (arming, and a completion's delivery into its read-ahead buffer) are defined in net/stream.hpp.

#include <coring/detail/cancel.hpp>
#include <coring/detail/op.hpp>
#include <coring/detail/provided_buffers.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/runtime/event_loop.hpp>

#include <liburing.h>

#include <coroutine>
#include <cstddef>
#include <span>
#include <utility>

namespace coring {

class stream;

namespace detail {

class receiver;

/// A read waiting on a stream's multishot receive (stream::enable_multishot) instead of an operation of its own.
struct rx_waiter : cancel_point {
    rx_waiter() noexcept : cancel_point{&cancel_ops_of<&cancel_thunk, &describe_as<receive_label>>} {}
    rx_waiter(const rx_waiter&) noexcept : rx_waiter() {} // a copy (a move before awaiting) is a fresh wait

    /// Takes what the read can use from the stream; true when the read is over. Bound by the awaitable.
    bool (*ready)(void* awaitable) noexcept = nullptr;
    void* awaitable = nullptr;
    std::span<std::byte> direct{}; // read(): a fresh receive lands here when nothing is buffered (one copy)
    std::size_t direct_got = 0;
    std::coroutine_handle<> h{};
    cancel_context* ctx = nullptr;
    receiver* rx = nullptr;
    bool cancelled = false;

    static void cancel_thunk(cancel_point* c) noexcept;
};

/// A stream's multishot receive: one IORING_OP_RECV with IORING_RECV_MULTISHOT and a provided-buffer ring, armed
/// by the first read that has to wait and left armed between reads, so that a request/response connection costs
/// no submission per read and no poll arming per message. Each completion's bytes are copied into the waiting
/// read's buffer or the stream's read-ahead buffer at once, and the provided buffer goes straight back.
///
/// Owned by its stream (heap-allocated once per stream, so that the stream may move). When the stream lets go
/// (close, destruction) with the receive still in the kernel, the receiver cancels it and frees itself on its final
/// completion. Back-pressure: once the read-ahead buffer holds limit() bytes nobody reads, the receive is cancelled
/// and re-armed by the next read that waits; bytes already received are never dropped.
class receiver : public standing_op {
public:
    receiver(stream* owner, event_loop& loop, provided_buffers& bufs) noexcept
        : standing_op(&prep, &complete), owner_(owner), bufs_(&bufs) {
        loop.add_standing(this);
    }

    [[nodiscard]] event_loop* loop_ptr() const noexcept { return static_cast<event_loop*>(loop); }
    void set_owner(stream* s) noexcept { owner_ = s; }
    [[nodiscard]] bool eof() const noexcept { return eof_; }
    [[nodiscard]] int error() const noexcept { return err_; }
    /// The error, once: the stream reads as ended from then on.
    int take_error() noexcept {
        eof_ = true;
        return std::exchange(err_, 0);
    }

    /// Parks `w` until the read it belongs to is over; false when it already is (or was cancelled before).
    template <class P>
    bool wait(rx_waiter& w, std::coroutine_handle<P> h) noexcept {
        w.ctx = context_of(h);
        if (w.ctx && w.ctx->requested) {
            w.cancelled = true;
            return false;
        }
        if (w.ready(w.awaitable)) return false; // the end or an error is already known
        w.h = h;
        w.rx = this;
        waiter_ = &w;
        arm();
        if (w.ctx) w.ctx->point = &w;
        return true;
    }
    void forget(rx_waiter& w) noexcept {
        if (waiter_ == &w) waiter_ = nullptr;
    }

    /// The stream lets go of its receiver (close, destruction): a waiting read ends with ECANCELED.
    void release() noexcept;

private:
    void arm() noexcept;
    void notify() noexcept {
        if (!waiter_ || !waiter_->ready(waiter_->awaitable)) return;
        rx_waiter* w = std::exchange(waiter_, nullptr);
        if (w->ctx) w->ctx->point = nullptr;
        loop_ptr()->schedule(w->h);
    }
    static void prep(op_base* op, io_uring_sqe* sqe) noexcept;
    static void complete(op_base* op, int res, unsigned flags) noexcept;

    stream* owner_; // null once the stream let go; the final completion then frees the receiver
    provided_buffers* bufs_;
    rx_waiter* waiter_ = nullptr;
    int fd_ = -1;           // the socket, as of the last arming
    int err_ = 0;           // a receive error: every later read reports it
    bool eof_ = false;      // the peer finished sending
    bool multishot_ = true; // the armed receive is multishot
    bool delivered_ = false;
};

inline void rx_waiter::cancel_thunk(cancel_point* c) noexcept {
    auto* w = static_cast<rx_waiter*>(c);
    // The receive stays armed: what arrives from now on waits in the stream for the next read.
    w->rx->forget(*w);
    w->cancelled = true;
    w->ctx->point = nullptr;
    w->rx->loop_ptr()->schedule(w->h);
}

inline void receiver::release() noexcept {
    owner_ = nullptr;
    if (waiter_) {
        rx_waiter* w = std::exchange(waiter_, nullptr);
        (void)w->ready(w->awaitable); // the stream has no receiver any more: ECANCELED
        if (w->ctx) w->ctx->point = nullptr;
        loop_ptr()->schedule(w->h);
    }
    if (!loop) {
        // The loop is gone; whatever the kernel held went with its ring. Never free what it may have owned.
        if (!in_kernel()) delete this;
        return;
    }
    if (current_state() == state::queued) return loop_ptr()->cancel(this); // completes, and frees, at once
    if (in_kernel()) {
        if (current_state() == state::submitted) loop_ptr()->cancel(this);
        return; // freed by its final completion
    }
    loop_ptr()->remove_standing(this);
    delete this;
}

inline void receiver::prep(op_base* op, io_uring_sqe* sqe) noexcept {
    auto* r = static_cast<receiver*>(op);
    if (r->multishot_) io_uring_prep_recv_multishot(sqe, r->fd_, nullptr, 0, 0);
    else io_uring_prep_recv(sqe, r->fd_, nullptr, r->bufs_->buffer_size(), 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = provided_buffers::group;
}
} // namespace detail

} // namespace coring
