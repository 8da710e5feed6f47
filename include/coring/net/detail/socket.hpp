#pragma once

#include <coring/detail/str_cat.hpp>
#include <coring/net/address.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace coring::detail {

/// The error of a socket operation: errno, and "<operation> <address>" in what() ("connect 127.0.0.1:9: Connection
/// refused"), so that a log line says what failed and with whom.
inline std::system_error net_error(int err, std::string_view op, const address& where) {
    return std::system_error(err, std::system_category(),
                             where.empty() ? str_cat("coring: ", op) : str_cat("coring: ", op, " ", where.to_string()));
}

/// An owned descriptor, closed (synchronously: a socket's close does not block) unless released.
class unique_fd {
public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~unique_fd() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }
    explicit operator bool() const noexcept { return fd_ >= 0; }

private:
    int fd_ = -1;
};

/// A new socket (close-on-exec, non-blocking: io_uring polls it instead of parking a worker thread on it).
inline unique_fd open_socket(int family, int type, const address& for_error) {
    const int fd = ::socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw net_error(errno, "socket", for_error);
    return unique_fd(fd);
}

/// getsockname / getpeername as an address (empty when the kernel has none, e.g. after a reset).
inline address sock_name(int fd, bool peer) {
    address a;
    socklen_t len = address::capacity();
    const int r = peer ? ::getpeername(fd, a.data(), &len) : ::getsockname(fd, a.data(), &len);
    if (r == 0) a.resize(len);
    return a;
}

/// setsockopt with an int value; throws net_error naming the option.
inline void set_int_option(int fd, int level, int name, int value, const char* what, const address& where) {
    if (::setsockopt(fd, level, name, &value, sizeof value) != 0) throw net_error(errno, what, where);
}

/// The error of an operation whose socket was closed (or destroyed) under it: ECANCELED, as a stream's reads and
/// writes report after stream::close(). `what` says which ("accept on a closed listener").
inline std::system_error closed_error(std::string_view what) {
    return std::system_error(ECANCELED, std::system_category(), str_cat("coring: ", what));
}

template <class Owner>
class socket_op_list;

/// The part of an operation in flight on a socket that lets the socket's close() stop it.
///
/// Closing a descriptor ends nothing the kernel holds on it (pitfalls B-7): an accept or a recv keeps its own
/// reference to the socket, which then stays bound and goes on accepting clients. So a socket lists the operations
/// it has in flight (enter() when one goes to the kernel, leave() when its awaiter resumes) and, when it closes,
/// orphans and cancels each; the operation still ends with its own CQE (B-1), reports orphaned(), and never touches
/// the socket again. Loop thread only, like the socket.
template <class Owner>
class socket_op {
public:
    /// `stop` ends the operation early (a cancellation; its own CQE still ends it); called at most once, by close.
    using stop_fn = void (*)(socket_op*) noexcept;

    socket_op(Owner* owner, stop_fn stop) noexcept : owner_(owner), stop_(stop) {}
    /// A copy (a move before awaiting) is not in flight.
    socket_op(const socket_op& o) noexcept : owner_(o.owner_), stop_(o.stop_) {}
    socket_op& operator=(const socket_op&) = delete;
    ~socket_op() { leave(); }

    /// The socket; null once it was closed or destroyed under the operation (then orphaned() is true).
    [[nodiscard]] Owner* owner() const noexcept { return owner_; }
    /// Whether the socket was closed under the operation.
    [[nodiscard]] bool orphaned() const noexcept { return orphaned_; }
    /// Lists the operation on `ops`, its socket's list, while the kernel has it.
    void enter(socket_op_list<Owner>& ops) noexcept { ops.push(this); }
    /// Unlists it (idempotent): its awaiter has resumed.
    void leave() noexcept {
        if (list_) list_->erase(this);
    }

private:
    friend class socket_op_list<Owner>;

    Owner* owner_;
    stop_fn stop_;
    socket_op_list<Owner>* list_ = nullptr; // listed on, while in flight
    socket_op* prev_ = nullptr;
    socket_op* next_ = nullptr;
    bool orphaned_ = false;
};

/// A socket's operations in flight (see socket_op). Moves with its socket, whose address it hands to them.
template <class Owner>
class socket_op_list {
public:
    socket_op_list() noexcept = default;
    socket_op_list(const socket_op_list&) = delete;
    socket_op_list& operator=(const socket_op_list&) = delete;

    [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }

    /// Takes over `o`'s operations (the socket moved to `owner`); this list must be empty.
    void take(socket_op_list& o, Owner* owner) noexcept {
        head_ = std::exchange(o.head_, nullptr);
        for (socket_op<Owner>* op = head_; op; op = op->next_) {
            op->list_ = this;
            op->owner_ = owner;
        }
    }
    /// Orphans and cancels every operation (the socket closes).
    void stop_all() noexcept {
        while (socket_op<Owner>* op = head_) {
            erase(op);
            op->owner_ = nullptr;
            op->orphaned_ = true;
            op->stop_(op);
        }
    }

private:
    friend class socket_op<Owner>;

    void push(socket_op<Owner>* op) noexcept {
        op->list_ = this;
        op->prev_ = nullptr;
        op->next_ = head_;
        if (head_) head_->prev_ = op;
        head_ = op;
    }
    void erase(socket_op<Owner>* op) noexcept {
        if (op->prev_) op->prev_->next_ = op->next_;
        else head_ = op->next_;
        if (op->next_) op->next_->prev_ = op->prev_;
        op->prev_ = op->next_ = nullptr;
        op->list_ = nullptr;
    }

    socket_op<Owner>* head_ = nullptr;
};

} // namespace coring::detail
