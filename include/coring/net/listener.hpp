#pragma once

#include <coring/detail/fd_ops.hpp>
#include <coring/detail/io_op.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/net/address.hpp>
#include <coring/net/detail/acceptor.hpp>
#include <coring/net/detail/socket.hpp>
#include <coring/runtime/event_loop.hpp>

#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstdio>
#include <stdexcept>
#include <utility>

namespace coring {

/// Options of a listening socket.
struct listen_options {
    /// The accept queue's length (listen(2)); the kernel caps it at net.core.somaxconn.
    int backlog = 4096;
    /// SO_REUSEPORT: several listeners (one loop per thread) on the same port, the kernel spreading connections.
    bool reuse_port = false;
};

/// A listening socket whose accept() yields `Stream`s (tcp_stream, unix_stream). Used on the loop's thread.
template <class Stream>
class basic_listener {
public:
    basic_listener() noexcept = default;
    /// Accepts in flight on `o` follow the listener.
    basic_listener(basic_listener&& o) noexcept
        : fd_(std::move(o.fd_)),
          local_(std::move(o.local_)),
          last_warning_(o.last_warning_),
          acc_(std::exchange(o.acc_, nullptr)) {
        ops_.take(o.ops_, this);
    }
    /// Closes this listener first (as close() does), then takes `o` and its accepts in flight.
    basic_listener& operator=(basic_listener&& o) noexcept {
        if (this != &o) {
            close();
            fd_ = std::move(o.fd_);
            local_ = std::move(o.local_);
            last_warning_ = o.last_warning_;
            acc_ = std::exchange(o.acc_, nullptr);
            ops_.take(o.ops_, this);
        }
        return *this;
    }
    basic_listener(const basic_listener&) = delete;
    basic_listener& operator=(const basic_listener&) = delete;
    /// Closes the listener as close() does.
    ~basic_listener() { close(); }

    /// The address it listens on (with the port the kernel picked for port 0).
    [[nodiscard]] const address& local_address() const noexcept { return local_; }
    /// The listening descriptor (-1 once closed).
    [[nodiscard]] int native_handle() const noexcept { return fd_.get(); }
    /// Stops listening, at once: no connection is accepted from here on and a TCP port can be bound again (with
    /// SO_REUSEADDR, as tcp_listener::bind sets). Accepts other tasks have in flight end with std::system_error
    /// (ECANCELED, "accept on a closed listener") at the loop's next turn; a connection accepted before the close is
    /// still returned. The kernel lets go of the socket once they have ended: an abstract Unix name is free from then
    /// on. Closing twice is harmless. Loop thread only.
    ///
    /// With accepts in flight the socket is shut down (shutdown(2)) at once, and its descriptor is closed when the
    /// last of them has ended, not before: an accept started in the same turn reaches the kernel only at the loop's
    /// next io_uring_enter, and must not find the number taken by a socket opened meanwhile. Without accepts in
    /// flight the descriptor is closed at once. The shutdown acts on the socket, not on this descriptor: a copy of
    /// it made with dup(), or inherited across fork() (the workers of a pre-fork server), stops listening too.
    ///
    /// Connections the multishot accept took that no accept() asked for yet are closed (their clients see the
    /// connection reset, as they would if it had waited in the kernel's backlog).
    void close() noexcept {
        if (detail::acceptor* a = std::exchange(acc_, nullptr)) {
            // The standing accept holds the socket while it is in the kernel. Stopped there and then (Linux 6.0), it
            // lets go at once; otherwise the descriptor is handed to it, and the socket is shut down as for a plain
            // accept in flight only if an accept() is waiting: a standing accept nobody waits for must not stop the
            // socket for the processes that share it (pre-fork), and lets go at the loop's next submission.
            if (a->needs_descriptor() && !a->stop_now()) {
                if (a->waited_for()) ::shutdown(fd_.get(), SHUT_RDWR);
                if (ops_.empty()) {
                    a->release(fd_.release());
                    return;
                }
                // Plain accepts in flight too (this listener was used on another loop meanwhile): they close this
                // descriptor, the acceptor a copy of it.
                const int copy = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
                if (copy >= 0) detail::fresh_fd(copy);
                a->release(copy);
            } else {
                a->release(-1);
            }
        }
        if (!ops_.empty()) ::shutdown(fd_.get(), SHUT_RDWR);
        if (ops_.hand_over(this)) (void)fd_.release(); // the last accept to end closes it
        else fd_.reset();
    }

    /// The awaitable of accept(): `co_await` yields the accepted `Stream`.
    class [[nodiscard]] accept_awaitable : public detail::io_op<accept_awaitable>,
                                           detail::timer_node,
                                           detail::fd_op<basic_listener> {
    public:
        /// An accept on `l`; nothing is submitted before it is awaited.
        explicit accept_awaitable(basic_listener& l) noexcept
            : detail::timer_node{{}, &on_backoff_over}, detail::fd_op<basic_listener>(&l, &stop) {}
        /// A fresh, not yet started accept on the same listener.
        accept_awaitable(const accept_awaitable& o) noexcept
            : detail::io_op<accept_awaitable>(o),
              detail::timer_node{{}, &on_backoff_over},
              detail::fd_op<basic_listener>(o) {}
        ~accept_awaitable() {
            if (linked()) detail::current_loop->remove_timer(this);
            // The frame went without being resumed: it waits no more, and a connection handed to it is not leaked.
            if (waiter_.acc) waiter_.acc->forget(waiter_);
            if (waiter_.conn >= 0) detail::close_fd(waiter_.conn);
        }

        bool await_ready() const {
            if (!listener() || !listener()->fd_) throw std::logic_error("coring: accept on a closed listener");
            return false;
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            if (detail::acceptor* a = listener()->acceptor_here()) {
                // A connection already taken is returned without suspending (unless the task was cancelled).
                via_acceptor_ = true;
                return a->wait(waiter_, h);
            }
            this->fd_ = listener()->fd_.get(); // the SQE names it, whatever becomes of the listener
            if (!detail::io_op<accept_awaitable>::await_suspend(h)) return false;
            this->enter(listener()->ops_);
            return true;
        }
        /// Fills the SQE: IORING_OP_ACCEPT, the connection close-on-exec and non-blocking. Called by the loop.
        void prep(io_uring_sqe* sqe) noexcept {
            len_ = address::capacity();
            io_uring_prep_accept(sqe, this->fd_, peer_.data(), &len_, SOCK_CLOEXEC | SOCK_NONBLOCK);
        }
        /// The CQE arrived: true with a connection or an error; false to accept again, at once after a client gave up
        /// (ECONNABORTED, EINTR), or parked on a back-off timer when out of descriptors or memory.
        bool step(int res) noexcept {
            if (res >= 0) {
                conn_ = res;
                peer_.resize(len_);
                return true;
            }
            if (!listener()) { // closed under it: never retry
                err_ = -res;
                return true;
            }
            if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
                // Out of descriptors or memory: the pending connection stays in the backlog. Retrying at once would
                // spin (E-3 in the pitfalls); wait 10 ms, doubling to 100 ms, and say so at most every 5 s.
                backoff_ = backoff_.count() ? std::min(backoff_ * 2, std::chrono::milliseconds(100))
                                            : std::chrono::milliseconds(10);
                detail::warn_accept_backoff(listener()->local_, listener()->last_warning_, -res);
                deadline = detail::clock::now() + backoff_;
                this->loop()->add_timer(this);
                this->park();
                return false;
            }
            if (res == -ECONNABORTED || res == -EINTR) return false; // the client gave up first: take the next one
            err_ = -res;
            return true;
        }
        /// Cancelled during a back-off wait: its timer goes.
        void cancel_parked() noexcept {
            if (linked()) this->loop()->remove_timer(this);
        }
        /// The accepted connection.
        Stream await_resume() {
            if (via_acceptor_) return resume_from_acceptor();
            this->leave();
            if (conn_ >= 0)
                return Stream(conn_, peer_); // accepted, even if cancelled or closed since: never leak it (B-4)
            if (this->cancelled() && !stopped_parked_) throw cancelled_error();
            if (this->orphaned()) throw detail::closed_error("accept on a closed listener");
            if (this->cancelled()) throw cancelled_error();
            throw detail::net_error(err_, "accept on", listener()->local_);
        }

    private:
        Stream resume_from_acceptor() {
            if (waiter_.conn >= 0) {
                const int conn = std::exchange(waiter_.conn, -1);
                return Stream(conn, detail::sock_name(conn, true)); // the accept could not say (see detail::acceptor)
            }
            if (waiter_.cancelled) throw cancelled_error();
            if (waiter_.err == ECANCELED) throw detail::closed_error("accept on a closed listener");
            throw detail::net_error(waiter_.err, "accept on", waiter_.where);
        }
        basic_listener* listener() const noexcept { return this->owner(); }
        static void on_backoff_over(detail::timer_node* n) noexcept { static_cast<accept_awaitable*>(n)->unpark(); }
        /// The listener closes: cancel the accept in the kernel, or end its back-off wait.
        static void stop(detail::fd_op<basic_listener>* op, basic_listener*) noexcept {
            auto* self = static_cast<accept_awaitable*>(op);
            self->stopped_parked_ = self->linked();
            detail::cancel_point* c = self;
            c->on_cancel(c);
        }

        address peer_;
        socklen_t len_ = 0; // written by the kernel
        int conn_ = -1;     // the accepted connection
        int err_ = 0;
        bool stopped_parked_ = false; // close() ended the back-off wait (io_op then says cancelled())
        bool via_acceptor_ = false;   // waited on the listener's multishot accept instead
        std::chrono::milliseconds backoff_{0};
        detail::accept_waiter waiter_;
    };

    /// Waits for the next connection (IORING_OP_ACCEPT) and returns it. Out of descriptors (EMFILE, ENFILE), it
    /// backs off and retries instead of failing or spinning, with one line on stderr every 5 s at most; it resumes
    /// by itself once descriptors are free. Throws std::system_error ("accept on <address>") and cancelled_error.
    [[nodiscard]] accept_awaitable accept() noexcept { return accept_awaitable(*this); }

protected:
    /// Creates, binds and listens; SO_REUSEADDR so that a restarted server does not wait for TIME_WAIT.
    void open(const address& at, const listen_options& o) {
        fd_ = detail::open_socket(at.family(), SOCK_STREAM, at);
        if (at.family() != AF_UNIX)
            detail::set_int_option(fd_.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR on", at);
        if (o.reuse_port) detail::set_int_option(fd_.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT on", at);
        if (::bind(fd_.get(), at.data(), at.size()) != 0) throw detail::net_error(errno, "bind", at);
        if (::listen(fd_.get(), o.backlog) != 0) throw detail::net_error(errno, "listen on", at);
        local_ = detail::sock_name(fd_.get(), false);
        if (local_.empty()) local_ = at;
    }

    detail::unique_fd fd_; ///< the listening socket; empty once closed
    address local_;        ///< the address it listens on, as local_address() returns it

private:
    /// The multishot accept of this listener on the current loop, made on first use; null where accept() submits its
    /// own operation instead: epoll, loop_options::multishot_accept off, a listener first used on another loop (or
    /// with plain accepts still in flight), or no memory.
    detail::acceptor* acceptor_here() noexcept {
        event_loop* loop = event_loop::try_current();
        if (!loop) return nullptr;
        const bool wanted = loop->backend() == backend::io_uring && loop->options().multishot_accept;
        if (acc_) {
            if (acc_->loop_ptr() == loop) return acc_;
            // Used on another loop than before. Once the former loop is gone the acceptor follows, with what it
            // holds, if this loop wants one (else those connections are closed); while it lives (a loop that is
            // not running, on this thread), plain accepts until this listener closes.
            if (acc_->loop_ptr()) return nullptr;
            if (wanted && acc_->rebind(*loop)) return acc_;
            std::exchange(acc_, nullptr)->release(-1);
        }
        if (!wanted) return nullptr;
        if (!ops_.empty()) return nullptr; // plain accepts in flight: one kind at a time keeps close() simple
        try {
            // Before 5.19 the flag is refused with EINVAL, which the acceptor also handles: this saves the round trip.
            acc_ = new detail::acceptor(fd_.get(), local_, *loop, !detail::kernel_older_than(5, 19));
        } catch (const std::bad_alloc&) {
            return nullptr;
        }
        return acc_;
    }

    detail::clock::time_point last_warning_{};
    detail::acceptor* acc_ = nullptr; // the multishot accept (owned; released by close())
    friend class detail::fd_op<basic_listener>;
    /// Called by the last accept in flight to end after close() handed it the descriptor.
    static void close_handed_fd(int fd) noexcept { detail::close_fd(fd); }

    detail::fd_op_list<basic_listener> ops_; // accepts in flight, for close() to stop
};

} // namespace coring
