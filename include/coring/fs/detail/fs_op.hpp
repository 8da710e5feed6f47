#pragma once

#include <coring/detail/io_op.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/error.hpp>
#include <coring/runtime/event_loop.hpp>
#include <coring/thread/to_thread.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace coring::detail {

/// The error of a file operation: errno, and "<operation> <path>" in what() ("open /x/y: No such file or
/// directory"), with an optional hint in parentheses before the system's text.
inline std::system_error fs_error(int err, std::string_view op, std::string_view path, std::string_view hint = {}) {
    return std::system_error(err, std::system_category(),
                             hint.empty() ? str_cat("coring: ", op, " ", path)
                                          : str_cat("coring: ", op, " ", path, " (", hint, ")"));
}

/// The largest transfer one read or write system call makes (Linux's MAX_RW_COUNT); a longer request is short.
inline constexpr std::size_t max_rw_count = 0x7ffff000;

/// One file or filesystem operation: an io_uring operation when the running kernel has the opcode, otherwise the
/// same work done by a blocking system call on the loop's worker pool (pitfalls: probe, then fall back). Either way
/// its state lives in the awaiting frame and cancellation behaves as for an io_uring operation: one that completed
/// anyway returns its result.
///
/// `Derived` provides, besides io_op's prep() (and step(), which by default keeps the single CQE's res):
///   bool uses_ring(const event_loop&) const noexcept   whether the kernel can do it (probed opcodes);
///   int blocking() noexcept                             the fallback, on a worker thread: what the CQE would say
///                                                        (a result, or -errno);
/// and calls result() in its await_resume.
///
/// On the pool, a call that may block for ever (a read from an empty pipe) is made non-blocking (pipe_io()) and waits
/// in wait_ready() between attempts, which stop() (a file's close) and the task's cancellation interrupt: a thread
/// blocked in read(2) could not be woken, and its descriptor could not be closed under it (pitfalls G-3). A job still
/// queued when stopped never touches its descriptor.
template <class Derived>
class fs_op : public io_op<Derived> {
public:
    fs_op() noexcept = default;
    /// A copy (a move before awaiting) is a fresh operation.
    fs_op(const fs_op& o) noexcept : io_op<Derived>(o) {}
    fs_op& operator=(const fs_op&) = delete;

    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        auto& self = static_cast<Derived&>(*this);
        if (self.uses_ring(event_loop::current())) return io_op<Derived>::await_suspend(h);
        fallback_.emplace(std::in_place, blocking_call{&self});
        pool_ctx_ = context_of(h);
        if (!fallback_->await_suspend(h)) return false;
        // Stand in front of the job's own cancellation, to wake the worker before to_thread decides what to do.
        interrupt_.self = this;
        if (pool_ctx_ && pool_ctx_->point) {
            job_point_ = pool_ctx_->point;
            pool_ctx_->point = &interrupt_;
        }
        return true;
    }

    bool step(int res) noexcept {
        res_ = res;
        return true;
    }

protected:
    /// The operation's result or -errno. Throws cancelled_error when the task was cancelled and the operation
    /// stopped for it (a completion that won the race is returned). After stop(), a stopped operation says -ECANCELED.
    int result() {
        if (fallback_) {
            const bool requested = pool_ctx_ && pool_ctx_->requested;
            int r;
            try {
                r = fallback_->await_resume();
            } catch (const cancelled_error&) {
                if (requested) throw;
                return -ECANCELED; // withdrawn by stop(), not by the task's cancellation
            }
            if (r == -ECANCELED && requested && stopped()) throw cancelled_error();
            return r;
        }
        if (this->cancelled()) throw cancelled_error();
        return res_;
    }
    /// Whether the worker pool did the work.
    [[nodiscard]] bool fell_back() const noexcept { return fallback_.has_value(); }

    /// Ends the operation early (its file was closed): cancels it in the kernel, or wakes or withdraws it on the pool.
    /// It still ends through its own completion, with -ECANCELED if it was stopped in time. Loop thread.
    void stop() noexcept {
        if (fallback_) return interrupt();
        cancel_point* c = this;
        c->on_cancel(c);
    }

    /// Worker thread, inside blocking(): one read or write of a pipe, a FIFO or another file without offsets, which
    /// may wait for ever for its other end. `call(fd, flags, may_block)` makes the system call (preadv2 or pwritev2
    /// at offset -1 with `flags`) and returns its result or -errno; `events` is POLLIN for a read, POLLOUT for a
    /// write. Returns the call's result, or -ECANCELED when the operation was stopped before it could be made.
    ///
    /// The call never blocks: readiness seen by a poll can be taken by someone else before the call (another read of
    /// the same FIFO on another worker, another process), and a thread blocked in the call could not be woken. So it
    /// is made with RWF_NOWAIT and goes back to wait_ready() on EAGAIN. Where the kernel refuses RWF_NOWAIT (FIFOs,
    /// which open without FMODE_NOWAIT; pipes before Linux 6.4) the call goes through a non-blocking opening of the
    /// same pipe (/proc/self/fd/N with O_NONBLOCK, closed after the call; O_NONBLOCK on `fd` itself would change
    /// every other user of the open file). Where that fails too (no /proc; a FIFO opened for writing whose readers are
    /// all gone), the call is made after wait_ready(), as before: it may then block if the readiness is taken first
    /// (`may_block` is true, for the caller to stay within what the readiness promises).
    template <class Call>
    int pipe_io(int fd, short events, Call call) noexcept {
        int own = -1;       // the non-blocking opening, where RWF_NOWAIT is refused
        bool nowait = true; // RWF_NOWAIT on fd itself
        int r;
        for (;;) {
            if (nowait) {
                r = call(fd, RWF_NOWAIT, false);
                if (r == -EOPNOTSUPP || r == -ENOSYS) {
                    nowait = false;
                    own = reopen_nonblocking(fd, events);
                    if (own >= 0) continue;
                    r = wait_ready(fd, events);
                    if (r == 0) r = call(fd, 0, true);
                    break;
                }
            } else {
                r = call(own, 0, false);
            }
            if (r == -EINTR) continue;
            if (r != -EAGAIN) break;
            if (const int w = wait_ready(fd, events); w < 0) {
                r = w;
                break;
            }
        }
        if (own >= 0) ::close(own);
        return r;
    }

    /// Worker thread, inside blocking(): waits until `fd` is ready for `events` (POLLIN, POLLOUT) or the operation is
    /// stopped. 0 when ready (a call that follows may still find nothing: see pipe_io), -ECANCELED when stopped.
    int wait_ready(int fd, short events) noexcept {
        int wake;
        {
            std::lock_guard<std::mutex> lock(pool_stop_.mutex);
            if (pool_stop_.stopped) return -ECANCELED;
            wake = ::eventfd(0, EFD_CLOEXEC);
            pool_stop_.wake = wake;
        }
        if (wake < 0) { // out of descriptors: wait for fd alone, uninterruptible (but never spinning)
            pollfd p{fd, events, 0};
            while (::poll(&p, 1, -1) < 0 && errno == EINTR) {}
            return 0;
        }
        pollfd p[2] = {{fd, events, 0}, {wake, POLLIN, 0}};
        while (::poll(p, 2, -1) < 0 && errno == EINTR) {}
        {
            std::lock_guard<std::mutex> lock(pool_stop_.mutex);
            pool_stop_.wake = -1;
        }
        ::close(wake);
        return p[1].revents ? -ECANCELED : 0;
    }
    /// Worker thread: whether the operation was stopped (a loop of several calls ends early).
    [[nodiscard]] bool stopped() noexcept {
        std::lock_guard<std::mutex> lock(pool_stop_.mutex);
        return pool_stop_.stopped;
    }

    int res_ = -ECANCELED; // the CQE's res (ring path)

private:
    /// A non-blocking opening of the pipe or FIFO that `fd` is, for `events` (POLLIN: read, POLLOUT: write); -1 when
    /// none can be had.
    static int reopen_nonblocking(int fd, short events) noexcept {
        // Only a FIFO: opening /proc/self/fd/N runs the object's open() again, which for a device (a pty master,
        // evdev, tun) makes a new object, not a second door to this one. Checked again after the open, by inode.
        struct stat before {};
        if (::fstat(fd, &before) != 0 || !S_ISFIFO(before.st_mode)) return -1;
        char path[32];
        std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        const int mode = events & POLLOUT ? O_WRONLY : O_RDONLY;
        const int flags = ::fcntl(fd, F_GETFL);
        const int direct = flags >= 0 ? (flags & O_DIRECT) : 0; // a packet-mode pipe stays one
        const int own = ::open(path, mode | direct | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (own < 0) return -1;
        struct stat after {};
        if (::fstat(own, &after) != 0 || after.st_dev != before.st_dev || after.st_ino != before.st_ino) {
            ::close(own);
            return -1;
        }
        return own;
    }

    struct blocking_call {
        Derived* self;
        int operator()() const noexcept {
            {
                std::lock_guard<std::mutex> lock(self->pool_stop_.mutex);
                if (self->pool_stop_.stopped) return -ECANCELED; // stopped while queued: leave the descriptor alone
                self->pool_stop_.started = true;
            }
            return self->blocking();
        }
    };

    /// Between the loop thread (stop) and the worker (blocking_call, wait_ready).
    struct pool_stop {
        std::mutex mutex;
        bool stopped = false; // stop() or a cancellation came
        bool started = false; // a worker began the call
        int wake = -1;        // the eventfd wait_ready polls, while it does
    };

    /// Loop thread: the task was cancelled, or stop(). A job not begun is withdrawn by to_thread's own cancellation
    /// (or, taken by a worker meanwhile, returns at once); a running one is woken if it waits in wait_ready and ends
    /// with its own result, so that bytes it already moved are not thrown away.
    void interrupt() noexcept {
        bool started;
        {
            std::lock_guard<std::mutex> lock(pool_stop_.mutex);
            pool_stop_.stopped = true;
            started = pool_stop_.started;
            if (pool_stop_.wake >= 0) (void)::eventfd_write(pool_stop_.wake, 1);
        }
        if (!started && job_point_) {
            cancel_point* job = std::exchange(job_point_, nullptr);
            job->on_cancel(job);
        }
    }

    /// What the awaiting chain's cancellation calls on the pool path.
    struct interrupter : cancel_point {
        fs_op* self = nullptr;
    };
    static void on_interrupt(cancel_point* c) noexcept { static_cast<interrupter*>(c)->self->interrupt(); }

    std::optional<to_thread_awaitable<blocking_call>> fallback_;
    pool_stop pool_stop_;
    cancel_context* pool_ctx_ = nullptr; // the awaiting chain's, on the pool path
    cancel_point* job_point_ = nullptr;  // the job's own cancellation, which interrupt_ stands in front of
    interrupter interrupt_{{&cancel_ops_of<&on_interrupt>}, nullptr};
};

} // namespace coring::detail
