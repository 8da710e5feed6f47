#pragma once

#include <coring/detail/loop_core.hpp>
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
        if (fd_ >= 0) close_fd(fd_);
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
    fresh_fd(fd);
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

} // namespace coring::detail
