#pragma once

// A listener's standing accept (IORING_ACCEPT_MULTISHOT) and the accept() calls that wait on it.

#include <coring/detail/cancel.hpp>
#include <coring/detail/fd_ops.hpp>
#include <coring/detail/op.hpp>
#include <coring/detail/provided_buffers.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/net/address.hpp>
#include <coring/runtime/event_loop.hpp>

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdio>
#include <new>
#include <system_error>
#include <utility>
#include <vector>

namespace coring::detail {

class acceptor;

/// One line on stderr for an accept backing off (out of descriptors or memory), at most every 5 s per listener.
inline void warn_accept_backoff(const address& local, clock::time_point& last, int err) noexcept {
    const auto now = clock::now();
    if (now - last < std::chrono::seconds(5)) return;
    last = now;
    std::fprintf(stderr, "coring: accept on %s: %s; backing off until descriptors are free\n",
                 local.to_string().c_str(), std::system_category().message(err).c_str());
}

inline constexpr char accept_label[] = "accept (multishot)";

/// An accept() waiting on its listener's acceptor instead of an operation of its own.
struct accept_waiter : cancel_point {
    accept_waiter() noexcept : cancel_point{&cancel_ops_of<&cancel_thunk, &describe_as<accept_label>>} {}
    accept_waiter(const accept_waiter&) noexcept : accept_waiter() {} // a copy (a move before awaiting) is a fresh wait

    std::coroutine_handle<> h{};
    cancel_context* ctx = nullptr;
    acceptor* acc = nullptr; // while parked
    accept_waiter* next = nullptr;
    int conn = -1; // the connection handed over
    int err = 0;   // an accept error handed over (ECANCELED: the listener closed)
    bool cancelled = false;
    address where{}; // the listener's address, with an error (the listener may have moved or closed since)

    static void cancel_thunk(cancel_point* c) noexcept;
};

/// A listener's multishot accept: one IORING_OP_ACCEPT with IORING_ACCEPT_MULTISHOT (Linux 5.19), armed by the first
/// accept() that has to wait and left armed between accepts, so that a server's accept loop costs no submission per
/// connection, and a connection that arrives while the server task is busy is already accepted when it asks for it
/// (accept() returns without suspending). Connections nobody has asked for yet wait in a queue; past queue_limit of
/// them the accept is cancelled until somebody asks again (the rest wait in the kernel's backlog, as without it).
/// A kernel that refuses the flag (EINVAL) gets plain accepts, one per waiting accept(), from the same object.
///
/// Owned by its listener (heap-allocated so that the listener may move). When the listener closes with the accept
/// still in the kernel, the listener shuts the socket down and hands its descriptor over; the acceptor cancels, and
/// closes the descriptor and frees itself on the final completion (the number must not be reused while an SQE that
/// names it may still be submitted).
///
/// The peer's address is not taken by the accept (one buffer would serve every completion of a multishot accept, and
/// completions are reaped after several may have landed): accept() asks the socket (getpeername) as it hands the
/// connection out, so that the stream knows its peer from then on, even after a reset; a connection reset while it
/// waited in the queue comes out with an empty peer_address().
class acceptor : public standing_op, timer_node {
public:
    /// Connections accepted and not asked for, past which the multishot accept pauses.
    static constexpr std::size_t queue_limit = 64;

    acceptor(int fd, address local, event_loop& loop, bool multishot)
        : standing_op(&prep, &complete),
          timer_node{{}, &on_backoff_over},
          fd_(fd),
          local_(std::move(local)),
          multishot_(multishot) {
        queue_.reserve(queue_limit);
        loop.add_standing(this);
    }
    acceptor(const acceptor&) = delete;
    acceptor& operator=(const acceptor&) = delete;

    [[nodiscard]] event_loop* loop_ptr() const noexcept { return static_cast<event_loop*>(loop); }
    /// Whether an accept() can be answered at once: a connection is queued, or an error waits to be reported.
    [[nodiscard]] bool ready() const noexcept { return head_ < queue_.size() || err_ != 0; }
    [[nodiscard]] std::size_t queued() const noexcept { return queue_.size() - head_; }
    [[nodiscard]] bool multishot() const noexcept { return multishot_; }

    /// Answers `w` from the queue (the oldest connection) or with the pending error. Requires ready().
    void take(accept_waiter& w) noexcept {
        if (head_ < queue_.size()) {
            w.conn = queue_[head_++];
            if (head_ == queue_.size()) {
                queue_.clear();
                head_ = 0;
            } else if (head_ >= queue_limit && 2 * head_ >= queue_.size()) {
                // A server that never empties the queue (it awaits something between accepts) must not grow it.
                queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(head_));
                head_ = 0;
            }
        } else {
            w.err = std::exchange(err_, 0);
            w.where = local_;
        }
    }

    /// Parks `w` until a connection (or error) is handed to it; false when there was no need to wait.
    template <class P>
    bool wait(accept_waiter& w, std::coroutine_handle<P> h) noexcept {
        w.ctx = context_of(h);
        if (w.ctx && w.ctx->requested) {
            w.cancelled = true;
            return false;
        }
        if (ready()) {
            take(w);
            return false;
        }
        w.h = h;
        w.acc = this;
        w.next = nullptr;
        *tail_ = &w;
        tail_ = &w.next;
        arm();
        if (w.ctx) w.ctx->point = &w;
        return true;
    }
    /// Unlinks a parked waiter (its task was cancelled). Whatever arrives later waits in the queue.
    void forget(accept_waiter& w) noexcept {
        for (accept_waiter** p = &waiters_; *p; p = &(*p)->next) {
            if (*p != &w) continue;
            *p = w.next;
            if (!*p) tail_ = p;
            w.acc = nullptr;
            return;
        }
    }

    /// Whether the accept is in the kernel (the listener must then hand its descriptor over at close: see release).
    [[nodiscard]] bool needs_descriptor() const noexcept { return loop && in_kernel(); }
    /// Whether an accept() is waiting.
    [[nodiscard]] bool waited_for() const noexcept { return waiters_ != nullptr; }
    /// Stops the accept before returning where the kernel can (event_loop::cancel_now); true when it no longer holds
    /// the listening socket.
    bool stop_now() noexcept { return loop && current_state() == state::submitted && loop_ptr()->cancel_now(this); }
    /// Moves an acceptor whose loop is gone to `l`, with the connections it holds: its listener is now used there.
    bool rebind(event_loop& l) noexcept {
        if (in_kernel() || current_state() == state::queued || linked()) return false;
        if (loop) loop_ptr()->remove_standing(this);
        l.add_standing(this);
        return true;
    }
    /// The listener closes: parked accepts end with ECANCELED at the next turn, connections nobody took are closed,
    /// and the accept is cancelled. `handed` (-1, or the listening descriptor when needs_descriptor()) is closed
    /// once the kernel is done with the accept. Frees the acceptor, now or at its final completion. Loop thread only.
    void release(int handed) noexcept {
        released_ = true;
        handed_ = handed;
        while (accept_waiter* w = waiters_) {
            waiters_ = w->next;
            w->acc = nullptr;
            w->err = ECANCELED;
            if (loop) resume(*w); // with the loop gone, so is every task that could be resumed
        }
        tail_ = &waiters_;
        for (std::size_t i = head_; i < queue_.size(); ++i) close_fd(queue_[i]);
        queue_.clear();
        head_ = 0;
        if (!loop) { // the loop is gone, and whatever the kernel held went with its ring
            if (handed_ >= 0) close_fd(handed_);
            if (!in_kernel()) delete this;
            return;
        }
        if (linked()) loop_ptr()->remove_timer(this);
        if (current_state() == state::queued) {
            loop_ptr()->cancel(this); // completes (and frees) at once
            return;
        }
        if (in_kernel()) {
            if (current_state() == state::submitted) loop_ptr()->cancel(this);
            return; // freed by the final completion
        }
        finish();
    }

private:
    void arm() noexcept {
        if (in_kernel() || current_state() == state::queued || linked() || released_ || !loop) return;
        if (multishot_ && queued() >= queue_limit) return;
        loop_ptr()->start(this);
    }
    void resume(accept_waiter& w) noexcept {
        if (w.ctx) w.ctx->point = nullptr;
        loop_ptr()->schedule(w.h);
    }
    /// A connection: to the oldest waiter, else into the queue (closed if even that fails: the client sees a reset,
    /// as an overloaded server's would).
    void deliver(int conn) noexcept {
        if (accept_waiter* w = waiters_) {
            pop_waiter();
            w->conn = conn;
            return resume(*w);
        }
        try {
            queue_.push_back(conn);
        } catch (const std::bad_alloc&) {
            close_fd(conn);
        }
    }
    void fail(int err) noexcept {
        if (accept_waiter* w = waiters_) {
            pop_waiter();
            w->err = err;
            w->where = local_;
            return resume(*w);
        }
        if (!err_) err_ = err;
    }
    void pop_waiter() noexcept {
        waiters_->acc = nullptr;
        waiters_ = waiters_->next;
        if (!waiters_) tail_ = &waiters_;
    }
    void finish() noexcept {
        if (handed_ >= 0) close_fd(handed_);
        loop_ptr()->remove_standing(this);
        delete this;
    }
    static void on_backoff_over(timer_node* n) noexcept {
        auto* a = static_cast<acceptor*>(n);
        if (a->waiters_) a->arm(); // else the next accept() arms it
    }

    static void prep(op_base* op, io_uring_sqe* sqe) noexcept {
        auto* a = static_cast<acceptor*>(op);
        if (a->multishot_) io_uring_prep_multishot_accept(sqe, a->fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        else io_uring_prep_accept(sqe, a->fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    }
    static void complete(op_base* op, int res, unsigned flags) noexcept {
        auto* a = static_cast<acceptor*>(op);
        const bool final = !(flags & IORING_CQE_F_MORE);
        if (a->released_) {
            if (res >= 0) close_fd(res); // accepted as the listener closed: nobody will ask for it
            if (final) a->finish();
            return;
        }
        if (res >= 0) {
            a->accepted_any_ = true;
            a->backoff_ = {};
            a->deliver(res);
        } else {
            switch (-res) {
            case ECANCELED:    // paused (queue full), or stopped by the loop's drain
            case ECONNABORTED: // the client gave up first: take the next one
            case EINTR:
            case EAGAIN:
                break;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                // Out of descriptors or memory: the pending connection stays in the backlog. Retrying at once would
                // spin (E-3 in the pitfalls); wait 10 ms, doubling to 100 ms, and say so at most every 5 s.
                a->backoff_ = a->backoff_.count() ? std::min(a->backoff_ * 2, std::chrono::milliseconds(100))
                                                  : std::chrono::milliseconds(10);
                warn_accept_backoff(a->local_, a->last_warning_, -res);
                if (final) {
                    a->deadline = clock::now() + a->backoff_;
                    try {
                        a->loop_ptr()->add_timer(a);
                    } catch (const std::bad_alloc&) {
                        // No back-off without memory for its timer: every waiting accept() reports it.
                        do a->fail(-res);
                        while (a->waiters_);
                    }
                }
                return;
            case EINVAL:
                // A kernel without IORING_ACCEPT_MULTISHOT (before 5.19): plain accepts from now on.
                if (a->multishot_ && !a->accepted_any_) {
                    a->multishot_ = false;
                    break;
                }
                [[fallthrough]];
            default:
                a->fail(-res);
            }
        }
        if (!final) {
            if (a->multishot_ && a->queued() >= queue_limit && a->current_state() == state::submitted)
                a->loop_ptr()->cancel(a); // nobody asks: leave the rest in the backlog until somebody does
            return;
        }
        if (a->waiters_) a->arm(); // still waited for: the accept ended (single-shot, an error, a full CQ)
    }

    int fd_;          // the listening socket (the listener's descriptor)
    int handed_ = -1; // the descriptor to close at the end, handed over by the closing listener
    address local_;   // for the EMFILE warning
    std::vector<int> queue_;
    std::size_t head_ = 0; // queue_[head_...] are waiting to be taken
    accept_waiter* waiters_ = nullptr;
    accept_waiter** tail_ = &waiters_;
    int err_ = 0; // an error no accept() was waiting for, reported to the next
    bool multishot_;
    bool accepted_any_ = false;
    bool released_ = false; // the listener let go
    std::chrono::milliseconds backoff_{0};
    clock::time_point last_warning_{};
};

inline void accept_waiter::cancel_thunk(cancel_point* c) noexcept {
    auto* w = static_cast<accept_waiter*>(c);
    // The accept stays armed: what arrives from now on waits in the queue for the next accept().
    acceptor* a = w->acc;
    a->forget(*w);
    w->cancelled = true;
    w->ctx->point = nullptr;
    a->loop_ptr()->schedule(w->h);
}

} // namespace coring::detail
