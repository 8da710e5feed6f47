#pragma once

#include <coring/detail/fd_ops.hpp>
#include <coring/detail/io_op.hpp>
#include <coring/error.hpp>
#include <coring/net/address.hpp>
#include <coring/net/detail/socket.hpp>

#include <liburing.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <coroutine>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace coring {

/// What udp_socket::recv_from() yields: the datagram's size and its sender (structured-binding friendly).
struct datagram {
    std::size_t bytes = 0; ///< bytes received (a longer datagram was truncated to the buffer)
    address from;          ///< the sender
};

/// A UDP socket (asyncio's datagram endpoints). Every send and receive is one io_uring operation (SENDMSG,
/// RECVMSG, SEND, RECV) with its message header in the awaiting frame. Used on the loop's thread.
class udp_socket {
public:
    udp_socket() noexcept = default;
    /// Sends and receives in flight on `o` follow the socket.
    udp_socket(udp_socket&& o) noexcept : fd_(std::move(o.fd_)), peer_(std::move(o.peer_)) { ops_.take(o.ops_, this); }
    /// Closes this socket first (as close() does), then takes `o` and its operations in flight.
    udp_socket& operator=(udp_socket&& o) noexcept {
        if (this != &o) {
            close();
            fd_ = std::move(o.fd_);
            peer_ = std::move(o.peer_);
            ops_.take(o.ops_, this);
        }
        return *this;
    }
    udp_socket(const udp_socket&) = delete;
    udp_socket& operator=(const udp_socket&) = delete;
    /// Closes the socket as close() does.
    ~udp_socket() { close(); }

    /// A socket bound to `at` (port 0 picks a free port). Throws std::system_error ("bind 127.0.0.1:53: ...").
    [[nodiscard]] static udp_socket bind(const address& at) {
        udp_socket s = open(at);
        if (::bind(s.fd_.get(), at.data(), at.size()) != 0) throw detail::net_error(errno, "bind", at);
        return s;
    }
    /// A socket of `family` (AF_INET, AF_INET6) bound by the kernel on first send.
    [[nodiscard]] static udp_socket open(int family) {
        udp_socket s;
        s.fd_ = detail::open_socket(family, SOCK_DGRAM, {});
        return s;
    }

    /// Sets the default peer: send() and recv() then talk to it only (connect(2), no packet sent).
    void connect(const address& to) {
        if (::connect(fd_.get(), to.data(), to.size()) != 0) throw detail::net_error(errno, "connect", to);
        peer_ = to;
    }

    /// The awaitable of send_to() and send(): `co_await` yields the bytes sent.
    class [[nodiscard]] send_awaitable : public detail::io_op<send_awaitable>, detail::fd_op<udp_socket> {
    public:
        /// Sends `buf` (not copied: it must outlive the awaitable) to a copy of `*to`, or to the connected peer when
        /// `to` is null; nothing is submitted before it is awaited.
        send_awaitable(udp_socket& s, std::span<const std::byte> buf, const address* to) noexcept
            : detail::fd_op<udp_socket>(&s, &stop), to_(to ? *to : address{}), to_given_(to != nullptr) {
            iov_.iov_base = const_cast<std::byte*>(buf.data());
            iov_.iov_len = buf.size();
        }
        /// A fresh, not yet started send of the same buffer to the same destination.
        send_awaitable(const send_awaitable& o) noexcept
            : detail::io_op<send_awaitable>(o),
              detail::fd_op<udp_socket>(o),
              iov_(o.iov_),
              to_(o.to_),
              to_given_(o.to_given_) {}
        bool await_ready() const {
            if (!this->owner() || !this->owner()->fd_) throw std::logic_error("coring: send on a closed udp_socket");
            return false;
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            this->fd_ = this->owner()->fd_.get(); // the SQE names it, whatever becomes of the socket
            if (!detail::io_op<send_awaitable>::await_suspend(h)) return false;
            this->enter(this->owner()->ops_);
            return true;
        }
        /// Fills the SQE: one IORING_OP_SENDMSG, MSG_NOSIGNAL. Called by the loop.
        void prep(io_uring_sqe* sqe) noexcept {
            msg_ = {};
            msg_.msg_iov = &iov_;
            msg_.msg_iovlen = 1;
            if (to_given_) {
                msg_.msg_name = to_.data();
                msg_.msg_namelen = to_.size();
            }
            io_uring_prep_sendmsg(sqe, this->fd_, &msg_, MSG_NOSIGNAL);
        }
        /// The CQE arrived: the send is over, sent or failed (a datagram is never sent in pieces).
        bool step(int res) noexcept {
            if (res >= 0) n_ = static_cast<std::size_t>(res);
            else err_ = -res;
            return true;
        }
        /// Bytes sent (the whole datagram).
        std::size_t await_resume() {
            this->leave();
            if (this->cancelled()) throw cancelled_error();
            if (err_ && this->orphaned()) throw detail::closed_error("send on a closed udp_socket");
            if (err_) throw detail::net_error(err_, "send to", to_given_ ? to_ : this->owner()->peer_);
            return n_;
        }

    private:
        static void stop(detail::fd_op<udp_socket>* op, udp_socket*) noexcept {
            detail::cancel_point* c = static_cast<send_awaitable*>(op);
            c->on_cancel(c);
        }

        iovec iov_{};
        msghdr msg_{};
        address to_;
        bool to_given_;
        std::size_t n_ = 0;
        int err_ = 0;
    };

    /// Sends one datagram to `to` (IORING_OP_SENDMSG). Throws std::system_error naming `to`, cancelled_error.
    [[nodiscard]] send_awaitable send_to(std::span<const std::byte> buf, const address& to) noexcept {
        return send_awaitable(*this, buf, &to);
    }
    /// send_to() of the bytes of `s`, which must outlive the awaitable.
    [[nodiscard]] send_awaitable send_to(std::string_view s, const address& to) noexcept {
        return send_to(std::as_bytes(std::span(s)), to);
    }
    /// Sends one datagram to the connected peer.
    [[nodiscard]] send_awaitable send(std::span<const std::byte> buf) noexcept {
        return send_awaitable(*this, buf, nullptr);
    }
    /// send() of the bytes of `s`, which must outlive the awaitable.
    [[nodiscard]] send_awaitable send(std::string_view s) noexcept { return send(std::as_bytes(std::span(s))); }

    /// The awaitable of recv_from() and recv(): `co_await` yields the datagram's size and sender.
    class [[nodiscard]] recv_awaitable : public detail::io_op<recv_awaitable>, detail::fd_op<udp_socket> {
    public:
        /// Receives into `buf`, which must outlive the awaitable; nothing is submitted before it is awaited.
        recv_awaitable(udp_socket& s, std::span<std::byte> buf) noexcept : detail::fd_op<udp_socket>(&s, &stop) {
            iov_.iov_base = buf.data();
            iov_.iov_len = buf.size();
        }
        /// A fresh, not yet started receive into the same buffer.
        recv_awaitable(const recv_awaitable& o) noexcept
            : detail::io_op<recv_awaitable>(o), detail::fd_op<udp_socket>(o), iov_(o.iov_) {}
        bool await_ready() const {
            if (!this->owner() || !this->owner()->fd_) throw std::logic_error("coring: recv on a closed udp_socket");
            return false;
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            this->fd_ = this->owner()->fd_.get();
            if (!detail::io_op<recv_awaitable>::await_suspend(h)) return false;
            this->enter(this->owner()->ops_);
            return true;
        }
        /// Fills the SQE: one IORING_OP_RECVMSG, the sender's address written into the awaitable. Called by the loop.
        void prep(io_uring_sqe* sqe) noexcept {
            msg_ = {};
            msg_.msg_iov = &iov_;
            msg_.msg_iovlen = 1;
            msg_.msg_name = from_.data();
            msg_.msg_namelen = address::capacity();
            io_uring_prep_recvmsg(sqe, this->fd_, &msg_, 0);
        }
        /// The CQE arrived: the receive is over, with a datagram or an error.
        bool step(int res) noexcept {
            if (res >= 0) {
                n_ = static_cast<std::size_t>(res);
                from_.resize(msg_.msg_namelen);
            } else {
                err_ = -res;
            }
            return true;
        }
        /// The datagram's size and sender.
        datagram await_resume() {
            this->leave();
            if (this->cancelled()) throw cancelled_error();
            if (err_ && this->orphaned()) throw detail::closed_error("recv on a closed udp_socket");
            if (err_) throw detail::net_error(err_, "recv on", this->owner()->local_address());
            return datagram{n_, std::move(from_)};
        }

    private:
        static void stop(detail::fd_op<udp_socket>* op, udp_socket*) noexcept {
            detail::cancel_point* c = static_cast<recv_awaitable*>(op);
            c->on_cancel(c);
        }

        iovec iov_{};
        msghdr msg_{};
        address from_;
        std::size_t n_ = 0;
        int err_ = 0;
    };

    /// Receives one datagram (IORING_OP_RECVMSG): `auto [n, from] = co_await s.recv_from(buf);`. A datagram longer
    /// than the buffer is truncated. Throws std::system_error, cancelled_error.
    [[nodiscard]] recv_awaitable recv_from(std::span<std::byte> buf) noexcept { return recv_awaitable(*this, buf); }
    /// recv_from() into chars.
    [[nodiscard]] recv_awaitable recv_from(std::span<char> buf) noexcept {
        return recv_from(std::as_writable_bytes(buf));
    }
    /// Receives one datagram from the connected peer; yields the datagram (its `bytes`).
    [[nodiscard]] recv_awaitable recv(std::span<std::byte> buf) noexcept { return recv_awaitable(*this, buf); }
    /// recv() into chars.
    [[nodiscard]] recv_awaitable recv(std::span<char> buf) noexcept { return recv(std::as_writable_bytes(buf)); }

    /// The bound address (getsockname).
    [[nodiscard]] address local_address() const { return detail::sock_name(fd_.get(), false); }
    /// The connected peer, if any.
    [[nodiscard]] const address& peer_address() const noexcept { return peer_; }
    /// The descriptor.
    [[nodiscard]] int native_handle() const noexcept { return fd_.get(); }
    /// Closes the socket. Sends and receives other tasks have in flight end with std::system_error (ECANCELED, "recv
    /// on a closed udp_socket") at the loop's next turn, unless they completed first (a datagram that arrived is
    /// returned, a send that went out is counted); the descriptor is closed when the last of them has ended, not
    /// before (an operation started in the same turn reaches the kernel only at the loop's next io_uring_enter, and
    /// must not find the number taken by a socket opened meanwhile), and with it the port is free again. Without
    /// operations in flight the descriptor is closed at once. Closing twice is harmless. Loop thread only.
    void close() noexcept {
        if (ops_.hand_over(this)) (void)fd_.release(); // the last operation to end closes it
        else fd_.reset();
    }
    /// SO_BROADCAST.
    void set_broadcast(bool on) {
        detail::set_int_option(fd_.get(), SOL_SOCKET, SO_BROADCAST, on, "SO_BROADCAST on", {});
    }

private:
    static udp_socket open(const address& at) {
        udp_socket s;
        s.fd_ = detail::open_socket(at.family(), SOCK_DGRAM, at);
        return s;
    }

    friend class detail::fd_op<udp_socket>;
    /// Called by the last operation in flight to end after close() handed it the descriptor.
    static void close_handed_fd(int fd) noexcept { detail::close_fd(fd); }

    detail::unique_fd fd_;
    address peer_;
    detail::fd_op_list<udp_socket> ops_; // sends and receives in flight, for close() to stop
};

} // namespace coring
