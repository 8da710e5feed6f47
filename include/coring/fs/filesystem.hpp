#pragma once

#include <coring/fs/detail/fs_op.hpp>
#include <coring/fs/detail/path_arg.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>

namespace coring {

namespace detail {

/// rename, remove, remove_directory, create_directory: one path operation (two paths for rename).
class [[nodiscard]] path_op_awaitable : public fs_op<path_op_awaitable> {
public:
    enum class kind { rename, remove, remove_directory, create_directory };

    path_op_awaitable(kind k, std::string path, std::string to = {}, unsigned perms = 0) noexcept
        : kind_(k), path_(std::move(path)), to_(std::move(to)), perms_(perms) {}

    bool uses_ring(const event_loop& loop) const noexcept {
        switch (kind_) {
        case kind::rename:
            return loop.supports(IORING_OP_RENAMEAT);
        case kind::create_directory:
            return loop.supports(IORING_OP_MKDIRAT);
        default:
            return loop.supports(IORING_OP_UNLINKAT);
        }
    }
    void prep(io_uring_sqe* sqe) noexcept {
        switch (kind_) {
        case kind::rename:
            return io_uring_prep_renameat(sqe, AT_FDCWD, path_.c_str(), AT_FDCWD, to_.c_str(), 0);
        case kind::remove:
            return io_uring_prep_unlinkat(sqe, AT_FDCWD, path_.c_str(), 0);
        case kind::remove_directory:
            return io_uring_prep_unlinkat(sqe, AT_FDCWD, path_.c_str(), AT_REMOVEDIR);
        case kind::create_directory:
            return io_uring_prep_mkdirat(sqe, AT_FDCWD, path_.c_str(), static_cast<mode_t>(perms_));
        }
    }
    int blocking() noexcept {
        int r = 0;
        switch (kind_) {
        case kind::rename:
            r = ::rename(path_.c_str(), to_.c_str());
            break;
        case kind::remove:
            r = ::unlinkat(AT_FDCWD, path_.c_str(), 0);
            break;
        case kind::remove_directory:
            r = ::unlinkat(AT_FDCWD, path_.c_str(), AT_REMOVEDIR);
            break;
        case kind::create_directory:
            r = ::mkdirat(AT_FDCWD, path_.c_str(), static_cast<mode_t>(perms_));
            break;
        }
        return r == 0 ? 0 : -errno;
    }
    /// Throws std::system_error naming the path(s), cancelled_error.
    void await_resume() {
        const int r = result();
        if (r >= 0) return;
        switch (kind_) {
        case kind::rename:
            throw fs_error(-r, "rename", str_cat(path_, " to ", to_));
        case kind::remove:
            throw fs_error(-r, "remove", path_);
        case kind::remove_directory:
            throw fs_error(-r, "remove_directory", path_);
        case kind::create_directory:
            throw fs_error(-r, "create_directory", path_);
        }
    }

private:
    kind kind_;
    std::string path_, to_;
    unsigned perms_;
};

} // namespace detail

// Every path below is a std::filesystem::path, std::string, std::string_view or const char* (detail::path_arg); the
// awaitable keeps its own copy for the kernel to read.

/// Renames `from` to `to`, replacing a file at `to` (renameat). Throws std::system_error ("rename a to b: ..."),
/// cancelled_error.
[[nodiscard]] inline detail::path_op_awaitable rename(detail::path_arg from, detail::path_arg to) {
    return detail::path_op_awaitable(detail::path_op_awaitable::kind::rename, from.str(), to.str());
}

/// Removes the file (or symbolic link, socket, FIFO) at `path` (unlinkat); a directory is an error (EISDIR), as
/// with os.remove. Throws std::system_error naming the path, cancelled_error.
[[nodiscard]] inline detail::path_op_awaitable remove(detail::path_arg path) {
    return detail::path_op_awaitable(detail::path_op_awaitable::kind::remove, path.str());
}

/// Removes the empty directory at `path` (os.rmdir). Throws std::system_error naming the path, cancelled_error.
[[nodiscard]] inline detail::path_op_awaitable remove_directory(detail::path_arg path) {
    return detail::path_op_awaitable(detail::path_op_awaitable::kind::remove_directory, path.str());
}

/// Creates the directory `path` with `permissions` less the umask (mkdirat); an existing one is an error
/// (EEXIST), as with os.mkdir. Throws std::system_error naming the path, cancelled_error.
[[nodiscard]] inline detail::path_op_awaitable create_directory(detail::path_arg path, unsigned permissions = 0777) {
    return detail::path_op_awaitable(detail::path_op_awaitable::kind::create_directory, path.str(), {}, permissions);
}

} // namespace coring
