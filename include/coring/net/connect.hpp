#pragma once

#include <coring/detail/io_op.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/net/address.hpp>
#include <coring/net/detail/socket.hpp>

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <utility>

namespace coring {

/// The awaitable of tcp_stream::connect(address) and unix_stream::connect(address): a new socket and an
/// IORING_OP_CONNECT. Yields the connected `Stream`; the socket is closed if the connection fails.
///
/// A Unix listener whose backlog is full refuses a non-blocking connect with EAGAIN, and no readiness says when it
/// has room again (a blocking connect(2) sleeps until an accept makes some). Such a connect waits too: it tries again
/// after 1 ms, then at doubling intervals up to 64 ms, until it gets through, fails otherwise or is cancelled, on
/// either backend.
template <class Stream>
class [[nodiscard]] connect_awaitable : public detail::io_op<connect_awaitable<Stream>>, detail::timer_node {
public:
    /// Keeps `to`; the socket is opened and the connect submitted only when awaited.
    explicit connect_awaitable(address to) noexcept : detail::timer_node{{}, &on_retry_due}, to_(std::move(to)) {}
    /// A fresh, not yet started operation to the same address (for passing it around before it is awaited).
    connect_awaitable(const connect_awaitable& o)
        : detail::io_op<connect_awaitable<Stream>>(o), detail::timer_node{{}, &on_retry_due}, to_(o.to_) {}
    connect_awaitable& operator=(const connect_awaitable&) = delete;
    ~connect_awaitable() {
        if (linked()) this->loop()->remove_timer(this); // linked only after await_suspend set the loop
    }

    bool await_ready() {
        if (to_.empty()) throw std::invalid_argument("coring: connect to an empty address");
        fd_ = detail::open_socket(to_.family(), SOCK_STREAM, to_);
        err_ = 0;
        retry_ = std::chrono::milliseconds(0);
        return false;
    }
    /// Fills the SQE: IORING_OP_CONNECT of the new socket to the address. Called by the loop.
    void prep(io_uring_sqe* sqe) noexcept { io_uring_prep_connect(sqe, fd_.get(), to_.data(), to_.size()); }
    /// The CQE arrived: true when the connect is over (connected or failed); false after a Unix listener's EAGAIN,
    /// parked until the retry timer fires.
    bool step(int res) noexcept {
        if (res == -EAGAIN && to_.family() == AF_UNIX) {
            using std::chrono::milliseconds;
            retry_ = retry_.count() ? std::min(retry_ * 2, milliseconds(64)) : milliseconds(1);
            deadline = detail::clock::now() + retry_;
            this->loop()->add_timer(this);
            this->park();
            return false;
        }
        if (res < 0) err_ = -res;
        return true;
    }
    /// Cancelled while it waited to try again: the timer goes; the socket closes with the awaitable.
    void cancel_parked() noexcept {
        if (linked()) this->loop()->remove_timer(this);
    }
    /// The connected stream.
    Stream await_resume() {
        if (this->cancelled()) throw cancelled_error();
        if (err_) throw detail::net_error(err_, "connect", to_);
        return Stream(fd_.release(), std::move(to_));
    }

private:
    static void on_retry_due(detail::timer_node* n) noexcept { static_cast<connect_awaitable*>(n)->unpark(); }

    address to_; // read by the kernel until the CQE: lives here, in the frame (B-3)
    detail::unique_fd fd_;
    int err_ = 0;
    std::chrono::milliseconds retry_{0};
};

} // namespace coring
