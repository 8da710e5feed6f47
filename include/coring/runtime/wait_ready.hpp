#pragma once

#include <coring/detail/io_op.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/error.hpp>
#include <coring/runtime/event_loop.hpp>

#include <liburing.h>
#include <poll.h>

#include <cerrno>
#include <coroutine>
#include <stdexcept>
#include <string>
#include <system_error>

namespace coring {

namespace detail {

/// An armed wait on a foreign descriptor, listed on its loop so that release_fd() can find it.
struct fd_wait_node {
    fd_wait_node* prev = nullptr;
    fd_wait_node* next = nullptr;
    int fd = -1;
    bool released = false;     // ended by release_fd
    op_base* op = nullptr;     // the operation to cancel
    loop_core* core = nullptr; // the list it is on (null when not listed)
    event_loop* loop = nullptr;

    void link(loop_core& c) noexcept {
        core = &c;
        prev = nullptr;
        next = c.fd_waits;
        if (next) next->prev = this;
        c.fd_waits = this;
    }
    void unlink() noexcept {
        if (!core) return;
        if (prev) prev->next = next;
        else core->fd_waits = next;
        if (next) next->prev = prev;
        core = nullptr;
        prev = next = nullptr;
    }
};

} // namespace detail

/// The awaitable of wait_ready(), wait_readable() and wait_writable(): one IORING_OP_POLL_ADD (on epoll, epoll's own
/// readiness), single-shot and level-triggered: a descriptor that is ready already returns at once. Its state lives in
/// the awaiting frame. Cancellable; ended by release_fd() for its descriptor.
class [[nodiscard]] ready_awaitable : public detail::io_op<ready_awaitable> {
public:
    /// Made by wait_ready(), wait_readable() and wait_writable(): a wait for `events` (POLLIN, POLLOUT, ...) on `fd`.
    ready_awaitable(int fd, unsigned events) noexcept : events_(events) { node_.fd = fd; }
    /// A copy (a move before awaiting) is a fresh wait on the same descriptor.
    ready_awaitable(const ready_awaitable& o) noexcept : detail::io_op<ready_awaitable>(o), events_(o.events_) {
        node_.fd = o.node_.fd;
    }
    ~ready_awaitable() { node_.unlink(); }

    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (node_.fd < 0)
            throw std::invalid_argument("coring: wait_ready: invalid descriptor " + std::to_string(node_.fd));
        node_.op = this;
        node_.released = false;
        node_.loop = &event_loop::current();
        node_.link(detail::require_core("wait_ready"));
        const bool suspended = detail::io_op<ready_awaitable>::await_suspend(h);
        if (!suspended) node_.unlink();
        return suspended;
    }
    /// For io_op: fills the SQE of the single-shot poll.
    void prep(io_uring_sqe* sqe) noexcept { io_uring_prep_poll_add(sqe, node_.fd, events_); }
    /// For io_op: the poll's CQE arrived; keeps the ready events or the error, and ends the wait.
    bool step(int res) noexcept {
        if (res < 0) err_ = -res;
        else revents_ = static_cast<unsigned>(res);
        return true;
    }
    /// The events that are ready (POLLIN, POLLOUT, POLLHUP, POLLERR, ...). Throws cancelled_error; std::system_error
    /// EBADF when release_fd() ended the wait, or the poll's own error.
    unsigned await_resume() {
        node_.unlink();
        if (cancelled()) throw cancelled_error(); // the task's own cancellation first (a timeout stays a timeout)
        if (node_.released)
            throw std::system_error(EBADF, std::system_category(),
                                    "coring: wait_ready: descriptor " + std::to_string(node_.fd) +
                                        " was released (release_fd) while waited on");
        if (err_)
            throw std::system_error(err_, std::system_category(),
                                    "coring: wait_ready on descriptor " + std::to_string(node_.fd));
        return revents_;
    }

private:
    detail::fd_wait_node node_;
    unsigned events_;
    unsigned revents_ = 0;
    int err_ = 0;
};

/// Waits until `fd` is ready for `events` (POLLIN, POLLOUT, POLLPRI, ...; asyncio's add_reader/add_writer as an
/// awaitable) and returns the ready events, which may include POLLHUP or POLLERR.
/// For descriptors coring does not own: a C library's non-blocking socket (libpq, libcurl, ...), a pipe, an eventfd.
/// Throws std::invalid_argument for a negative descriptor.
[[nodiscard]] inline ready_awaitable wait_ready(int fd, unsigned events) noexcept { return {fd, events}; }
/// wait_ready(fd, POLLIN).
[[nodiscard]] inline ready_awaitable wait_readable(int fd) noexcept { return {fd, POLLIN}; }
/// wait_ready(fd, POLLOUT).
[[nodiscard]] inline ready_awaitable wait_writable(int fd) noexcept { return {fd, POLLOUT}; }

/// Call before closing a descriptor that wait_ready/wait_readable/wait_writable may be waiting on (from a library's
/// close hook, or before the call that closes it): every such wait on this loop ends with std::system_error (EBADF),
/// and the epoll backend forgets the number. Closing first would leave the wait armed on the old file (the kernel keeps
/// it alive for the poll) and, on epoll, let the next descriptor with that number inherit stale state. Loop thread;
/// harmless when nothing waits.
inline void release_fd(int fd) noexcept {
    detail::loop_core* core = detail::current_core;
    if (!core) return;
    for (detail::fd_wait_node* n = core->fd_waits; n;) {
        detail::fd_wait_node* next = n->next;
        if (n->fd == fd && !n->released) {
            n->released = true;
            n->loop->cancel(n->op);
        }
        n = next;
    }
    if (core->forget_fd) core->forget_fd(core->forget_ctx, fd);
}

} // namespace coring
