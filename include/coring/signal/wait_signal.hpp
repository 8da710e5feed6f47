#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/op.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/error.hpp>
#include <coring/runtime/event_loop.hpp>

#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <concepts>
#include <coroutine>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace coring {

namespace detail {

/// Adds `sig` to `set`, or throws std::invalid_argument for a number that is no signal, one glibc reserves for itself
/// (32 and 33, which sigaddset refuses) and SIGKILL or SIGSTOP (which cannot be blocked, so no signalfd ever
/// reports them: waiting for them would wait forever).
template <class Int>
void add_signal(sigset_t& set, Int sig) {
    // Range-checked in the argument's own type, before any narrowing, so that a huge number cannot wrap around to a
    // valid one.
    bool in_range;
    if constexpr (std::is_signed_v<Int>) in_range = sig >= 1 && static_cast<long long>(sig) < NSIG;
    else in_range = static_cast<unsigned long long>(sig) >= 1 && static_cast<unsigned long long>(sig) < NSIG;
    if (!in_range || ::sigaddset(&set, static_cast<int>(sig)) != 0)
        throw std::invalid_argument("coring: wait_signal: invalid signal number " + std::to_string(sig));
    if (static_cast<int>(sig) == SIGKILL || static_cast<int>(sig) == SIGSTOP)
        throw std::invalid_argument("coring: wait_signal: SIGKILL and SIGSTOP cannot be blocked or waited for (got " +
                                    std::to_string(sig) + ")");
}

} // namespace detail

/// The awaitable of wait_signal(): a signalfd it owns, read through the loop's ring.
///
/// Construction blocks the signals in the calling thread (pthread_sigmask) and opens a signalfd for them
/// (SFD_CLOEXEC | SFD_NONBLOCK), so a signal that arrives before the co_await stays pending and is returned by it.
/// `co_await` reads one signalfd_siginfo with IORING_OP_READ (signalfd(2)); a nonblocking read that finds nothing
/// (older kernels return -EAGAIN instead of waiting) is retried after an IORING_OP_POLL_ADD for POLLIN. The read is
/// done in the loop thread's context, so it sees the signals pending for the process and for the loop thread.
///
/// Cancellable like any io_uring operation (IORING_OP_ASYNC_CANCEL): cancelled_error, or the signal when the read
/// consumed one before the cancellation reached the kernel (completion wins; the signal is not lost). The
/// descriptor is closed when the awaitable is destroyed. An lvalue may be awaited again: each co_await returns the
/// next signal of the set. Movable only before it is awaited. Loop thread only.
class [[nodiscard]] signal_awaitable : detail::op_base, detail::cancel_point {
public:
    /// Blocks `set` in the calling thread and opens a signalfd on it. Throws std::invalid_argument (empty set, or
    /// SIGKILL/SIGSTOP in it) before blocking anything, and std::system_error naming the call ("pthread_sigmask",
    /// "signalfd"); when the signalfd cannot be made, the thread's signal mask is restored.
    explicit signal_awaitable(const sigset_t& set)
        : detail::op_base(&do_prep, &do_complete),
          detail::cancel_point{&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::signal_label>>} {
        if (::sigisemptyset(&set))
            throw std::invalid_argument("coring: wait_signal: the set of signals is empty (it would wait forever)");
        if (::sigismember(&set, SIGKILL) == 1 || ::sigismember(&set, SIGSTOP) == 1)
            throw std::invalid_argument("coring: wait_signal: SIGKILL and SIGSTOP cannot be blocked or waited for");
        sigset_t old;
        if (const int e = ::pthread_sigmask(SIG_BLOCK, &set, &old); e != 0)
            throw std::system_error(e, std::system_category(), "coring: wait_signal: pthread_sigmask");
        fd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        if (fd_ >= 0) detail::fresh_fd(fd_); // epoll: no state left from an earlier descriptor with this number
        if (fd_ < 0) {
            const int e = errno;
            ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
            throw std::system_error(e, std::system_category(), "coring: wait_signal: signalfd");
        }
    }
    /// Takes over the descriptor; only before the awaitable is awaited.
    signal_awaitable(signal_awaitable&& o) noexcept
        : detail::op_base(&do_prep, &do_complete),
          detail::cancel_point{&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::signal_label>>},
          fd_(std::exchange(o.fd_, -1)) {}
    signal_awaitable(const signal_awaitable&) = delete;
    signal_awaitable& operator=(const signal_awaitable&) = delete;
    signal_awaitable& operator=(signal_awaitable&&) = delete;
    /// Closes the signalfd. The signals stay blocked in the thread: one that arrives later stays pending until the next
    /// wait_signal for it (or until the application unblocks it).
    ~signal_awaitable() {
        if (fd_ >= 0) detail::close_fd(fd_);
    }

    bool await_ready() const noexcept { return false; }

    /// Loop thread. Throws std::logic_error when there is no event_loop on this thread or the awaitable is already
    /// being awaited, and std::invalid_argument after it was moved from.
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (fd_ < 0) throw std::invalid_argument("coring: wait_signal: awaiting a moved-from awaitable");
        if (in_kernel() || current_state() == state::queued)
            throw std::logic_error("coring: a wait_signal awaitable can be awaited by one task at a time");
        cancelled_ = false;
        res_ = 0;
        step_ = step::read;
        ctx_ = detail::context_of(h);
        if (ctx_ && ctx_->requested) {
            cancelled_ = true;
            return false;
        }
        loop_ = &event_loop::current();
        h_ = h;
        loop_->start(this);
        if (ctx_) ctx_->point = this;
        return true;
    }

    /// The number of the signal that arrived (SIGINT...). Throws cancelled_error when the task was cancelled before a
    /// signal was read, std::system_error when the read failed.
    int await_resume() const {
        if (cancelled_) throw cancelled_error();
        if (res_ < 0) throw std::system_error(-res_, std::system_category(), "coring: wait_signal: read from signalfd");
        if (res_ != static_cast<int>(sizeof info_))
            throw std::system_error(EIO, std::system_category(), "coring: wait_signal: short read from signalfd");
        return static_cast<int>(info_.ssi_signo);
    }

    /// Everything the kernel said about the last signal returned (sender's pid and uid, si_code...).
    [[nodiscard]] const signalfd_siginfo& info() const noexcept { return info_; }
    /// The signalfd (-1 once moved from).
    [[nodiscard]] int fd() const noexcept { return fd_; }

private:
    enum class step : std::uint8_t { read, poll };

    static void do_prep(detail::op_base* op, io_uring_sqe* sqe) noexcept {
        auto* self = static_cast<signal_awaitable*>(op);
        // Offset 0: a signalfd is not seekable, where io_uring accepts 0 or -1.
        if (self->step_ == step::read) io_uring_prep_read(sqe, self->fd_, &self->info_, sizeof self->info_, 0);
        else io_uring_prep_poll_add(sqe, self->fd_, POLLIN);
    }

    static void do_complete(detail::op_base* op, int res, unsigned) noexcept {
        auto* self = static_cast<signal_awaitable*>(op);
        if (self->step_ == step::read && res >= 0) return self->finish(res); // a signal, even if cancelled since
        if (self->ctx_ && self->ctx_->requested) {
            // Nothing was consumed (-ECANCELED, -EINTR, or a poll that only said "readable").
            self->cancelled_ = true;
            return self->finish(0);
        }
        if (self->step_ == step::read && (res == -EAGAIN || res == -EINTR)) {
            self->step_ = step::poll; // an older kernel did not wait on the nonblocking descriptor: poll first
            return self->loop_->start(self);
        }
        if (self->step_ == step::poll && res >= 0) {
            self->step_ = step::read; // readable now
            return self->loop_->start(self);
        }
        self->finish(res); // an error
    }

    void finish(int res) noexcept {
        res_ = res;
        if (ctx_) ctx_->point = nullptr;
        loop_->schedule(h_);
    }

    static void on_cancel(detail::cancel_point* c) noexcept {
        auto* self = static_cast<signal_awaitable*>(c);
        self->loop_->cancel(self);
    }

    int fd_ = -1;                           // the signalfd, owned
    signalfd_siginfo info_{};               // written by the kernel's read; lives as long as the awaitable (B-2)
    event_loop* loop_ = nullptr;            // set when awaited
    detail::cancel_context* ctx_ = nullptr; // the awaiting chain's cancellation state
    std::coroutine_handle<> h_{};           // resumed once per co_await, from the final CQE
    int res_ = 0;                           // the read's res (bytes, or a negative errno)
    step step_ = step::read;                // what is in flight
    bool cancelled_ = false;                // ended by cancellation
};

/// Waits for one of the given signals and returns its number (asyncio's loop.add_signal_handler, as an awaitable):
/// `int sig = co_await coring::wait_signal(SIGINT, SIGTERM);` Variadic on purpose: GCC 12 rejects a braced list inside
/// a co_await expression ("array used as initializer").
///
/// The signals are blocked in the calling thread when wait_signal is *called*, not when it is awaited: one that
/// arrives in between stays pending and is returned by the co_await, instead of killing the process. They stay
/// blocked afterwards: a later signal waits, pending, for the next wait_signal (it is never lost, and never runs the
/// default action). Blocking is per thread: threads the application creates must block these signals too (or be
/// created after this call, inheriting the mask), or a signal sent to the process may be delivered to them instead;
/// coring's own worker threads block every signal. A signal sent to one particular other thread (pthread_kill) is not
/// seen here.
///
/// Call from a task on the loop thread. Throws std::invalid_argument for a number that is not a signal, or for SIGKILL
/// and SIGSTOP, before anything is blocked; std::system_error naming the call ("signalfd") when the descriptor cannot
/// be made. See signal_awaitable for cancellation.
template <class... Signals>
    requires(sizeof...(Signals) > 0 && ((std::integral<Signals> && !std::same_as<Signals, bool>)&&...))
[[nodiscard]] signal_awaitable wait_signal(Signals... signals) {
    sigset_t set;
    ::sigemptyset(&set);
    (detail::add_signal(set, signals), ...);
    return signal_awaitable(set);
}

/// wait_signal for a set built elsewhere (sigaddset...): the same, for every signal in `set`.
[[nodiscard]] inline signal_awaitable wait_signal(const sigset_t& set) { return signal_awaitable(set); }

inline task<> detail::dump_tasks_on(int signal) {
    for (;;) {
        co_await wait_signal(signal);
        dump_tasks(stderr);
    }
}

} // namespace coring
