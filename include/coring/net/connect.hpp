#pragma once

#include <coring/detail/io_op.hpp>
#include <coring/error.hpp>
#include <coring/net/address.hpp>
#include <coring/net/detail/socket.hpp>

#include <liburing.h>
#include <sys/socket.h>

#include <utility>

namespace coring {

/// The awaitable of tcp_stream::connect(address) and unix_stream::connect(address): a new socket and an
/// IORING_OP_CONNECT. Yields the connected `Stream`; the socket is closed if the connection fails.
template <class Stream>
class [[nodiscard]] connect_awaitable : public detail::io_op<connect_awaitable<Stream>> {
public:
    explicit connect_awaitable(address to) noexcept : to_(std::move(to)) {}
    connect_awaitable(const connect_awaitable& o) : detail::io_op<connect_awaitable<Stream>>(o), to_(o.to_) {}

    bool await_ready() {
        if (to_.empty()) throw std::invalid_argument("coring: connect to an empty address");
        fd_ = detail::open_socket(to_.family(), SOCK_STREAM, to_);
        return false;
    }
    void prep(io_uring_sqe* sqe) noexcept { io_uring_prep_connect(sqe, fd_.get(), to_.data(), to_.size()); }
    bool step(int res) noexcept {
        if (res < 0) err_ = -res;
        return true;
    }
    /// The connected stream.
    Stream await_resume() {
        if (this->cancelled()) throw cancelled_error();
        if (err_) throw detail::net_error(err_, "connect", to_);
        return Stream(fd_.release(), std::move(to_));
    }

private:
    address to_; // read by the kernel until the CQE: lives here, in the frame (B-3)
    detail::unique_fd fd_;
    int err_ = 0;
};

} // namespace coring
