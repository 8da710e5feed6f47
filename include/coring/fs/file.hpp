#pragma once

#include <coring/detail/fd_ops.hpp>
#include <coring/detail/kernel_errors.hpp>
#include <coring/detail/op.hpp>
#include <coring/fs/detail/fs_op.hpp>
#include <coring/fs/detail/path_arg.hpp>
#include <coring/fs/open_mode.hpp>
#include <coring/runtime/event_loop.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <limits.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace coring {

/// An open file: positional and sequential reads and writes, fsync, size and close, each one io_uring operation
/// (OPENAT, READ, WRITE, FSYNC, STATX, CLOSE) whose state lives in the awaiting frame; where the running kernel
/// lacks an opcode, the same system call runs on the loop's worker pool instead.
///
/// Reads and writes return what the kernel did: a read may be short and returns 0 at the end of the file; a write
/// may be short (write_all and write_all_at loop until everything is written). Positional operations (read_at,
/// write_at) may be in flight in any number at once; the sequential ones (read, write, write_all) advance the
/// file's position() and one at a time may be in flight (a second is a std::logic_error).
///
/// Errors are std::system_error naming the operation and the path ("read /data/x: Input/output error").
/// Cancellation (cancel(), a timeout): an operation that completed anyway returns its result; a cancelled
/// write_all has written a prefix (the position moves past it).
///
/// close(), the destructor and assigning to the file stop the operations other tasks have in flight on it: each
/// ends with std::system_error ECANCELED ("read /x/fifo (the file was closed): Operation canceled"), or
/// cancelled_error if its own task was cancelled, or with its result if it completed first. The kernel (or a worker
/// thread) holds the file until they have ended, so the descriptor is closed when the last of them ends, and not
/// before: its number cannot be reused by another open under them. Moving a file carries its operations in flight.
/// The destructor closes the descriptor if close() was not awaited, with an asynchronous IORING_OP_CLOSE when a loop
/// runs on the thread, so that it never blocks the loop.
class file {
public:
    /// No file.
    file() noexcept = default;
    /// Adopts an open descriptor; `path` is kept for error messages.
    explicit file(int fd, std::string path = {}) noexcept : fd_(fd), path_(std::move(path)) {}
    /// Operations in flight on `o` follow the file.
    file(file&& o) noexcept
        : fd_(std::exchange(o.fd_, -1)),
          path_(std::move(o.path_)),
          pos_(std::exchange(o.pos_, 0)),
          mem_align_(o.mem_align_),
          io_align_(o.io_align_),
          direct_(o.direct_),
          seq_busy_(std::exchange(o.seq_busy_, false)),
          nowait_(std::exchange(o.nowait_, nowait_state::unknown)),
          nowait_skip_(std::exchange(o.nowait_skip_, 0)),
          nowait_backoff_(std::exchange(o.nowait_backoff_, 0)) {
        ops_.take(o.ops_, this);
    }
    /// Closes this file first (stopping its operations in flight, as close() does), then takes `o` and its own.
    file& operator=(file&& o) noexcept {
        if (this != &o) {
            close_detached();
            fd_ = std::exchange(o.fd_, -1);
            path_ = std::move(o.path_);
            pos_ = std::exchange(o.pos_, 0);
            mem_align_ = o.mem_align_;
            io_align_ = o.io_align_;
            direct_ = o.direct_;
            seq_busy_ = std::exchange(o.seq_busy_, false);
            nowait_ = std::exchange(o.nowait_, nowait_state::unknown);
            nowait_skip_ = std::exchange(o.nowait_skip_, 0);
            nowait_backoff_ = std::exchange(o.nowait_backoff_, 0);
            ops_.take(o.ops_, this);
        }
        return *this;
    }
    file(const file&) = delete;
    file& operator=(const file&) = delete;
    /// Stops the operations in flight and closes the descriptor, as close() does but without waiting.
    ~file() { close_detached(); }

    // ---- opening ----------------------------------------------------------------------------------------------

    /// The awaitable of open().
    class [[nodiscard]] open_awaitable : public detail::fs_op<open_awaitable> {
    public:
        /// Made by open(): `flags` for openat(2), `permissions` for a file it creates.
        open_awaitable(std::string path, int flags, unsigned permissions) noexcept
            : path_(std::move(path)), flags_(flags), perms_(permissions) {}
        /// A copy (a move before awaiting) is a fresh operation on the same path.
        open_awaitable(const open_awaitable& o)
            : detail::fs_op<open_awaitable>(o), path_(o.path_), flags_(o.flags_), perms_(o.perms_) {}
        ~open_awaitable() {
            if (fd_ >= 0) ::close(fd_); // opened, but the caller was cancelled or the result never taken
        }

        /// For fs_op: whether the kernel has IORING_OP_OPENAT; otherwise openat(2) runs on the worker pool.
        bool uses_ring(const event_loop& loop) const noexcept { return loop.supports(IORING_OP_OPENAT); }
        /// For io_op: fills the SQE of the open, or of the statx that asks for open_mode::direct's alignment.
        void prep(io_uring_sqe* sqe) noexcept {
#ifdef STATX_DIOALIGN
            if (fd_ >= 0) return io_uring_prep_statx(sqe, fd_, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx_);
#endif
            io_uring_prep_openat(sqe, AT_FDCWD, path_.c_str(), flags_, perms_);
        }
        /// For io_op: a CQE arrived; true when the open is over. An open interrupted without a cancellation is made
        /// again (16 times at most, then EINTR); an open_mode::direct one goes on to the alignment query.
        bool step(int res) noexcept {
            // Interrupted before it did anything, and not by this task's cancellation (io_op takes -ECANCELED and
            // -EINTR as that, and never passes them here then): -ERESTARTSYS from a worker thread's blocked open that
            // was interrupted, which the kernel does not translate for openat; -ECANCELED or -EINTR that nobody asked
            // for (Linux 6.1 fails work whose io-wq worker could not be started while a signal was pending). Made
            // again; a cancellation that is the cause ends it instead (io_op, on the false returned).
            if (detail::is_restart_result(res) || res == -ECANCELED || res == -EINTR) {
                if (interruptions_ < max_interruptions) {
                    ++interruptions_;
                    return false;
                }
                res = -EINTR; // interrupted again and again: say so, with a code user space knows
            }
            if (fd_ >= 0) { // the O_DIRECT alignment query
                if (res == 0) read_alignment();
                res_ = 0;
                return true;
            }
            res_ = res;
            if (res < 0) return true;
            fd_ = res;
#ifdef STATX_DIOALIGN
            // O_DIRECT's alignment rules come from the file system (statx, Linux 6.1); without them, 512 bytes.
            if ((flags_ & O_DIRECT) && this->loop()->supports(IORING_OP_STATX)) return false;
#endif
            return true;
        }
        /// For fs_op, on a worker thread: openat(2), then statx for open_mode::direct's alignment; 0 or -errno.
        int blocking() noexcept {
            const int fd = ::openat(AT_FDCWD, path_.c_str(), flags_, static_cast<mode_t>(perms_));
            if (fd < 0) return -errno;
            fd_ = fd;
#ifdef STATX_DIOALIGN
            if ((flags_ & O_DIRECT) && ::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx_) == 0) read_alignment();
#endif
            return 0;
        }

        /// The open file. Throws std::system_error ("open /x/y: No such file or directory"), cancelled_error.
        file await_resume() {
            const int r = result(); // on cancelled_error, the destructor closes what was opened
            if (r < 0) {
                const bool direct_refused = (flags_ & O_DIRECT) && r == -EINVAL;
                throw detail::fs_error(-r, "open", path_,
                                       direct_refused ? "this file system may not support open_mode::direct" : "");
            }
            file f(std::exchange(fd_, -1), std::move(path_));
            f.direct_ = (flags_ & O_DIRECT) != 0;
            f.nowait_ = f.direct_ ? nowait_state::never : nowait_state::usable;
            f.mem_align_ = mem_align_;
            f.io_align_ = io_align_;
            return f;
        }

    private:
        void read_alignment() noexcept {
#ifdef STATX_DIOALIGN
            if ((stx_.stx_mask & STATX_DIOALIGN) && stx_.stx_dio_mem_align && stx_.stx_dio_offset_align) {
                mem_align_ = stx_.stx_dio_mem_align;
                io_align_ = stx_.stx_dio_offset_align;
            }
#endif
        }

        static constexpr int max_interruptions = 16;

        std::string path_;
        int flags_;
        unsigned perms_;
        int fd_ = -1;           // owned until handed to the file
        int interruptions_ = 0; // CQEs that said "interrupted" without a cancellation, made again
        std::uint32_t mem_align_ = 512, io_align_ = 512;
#ifdef STATX_DIOALIGN
        struct statx stx_ {};
#endif
    };

    /// Opens `path` (relative paths from the working directory) with `mode`; a created file gets `permissions`
    /// less the umask. Throws std::invalid_argument for a mode that means nothing (truncate without write),
    /// std::system_error naming the path, cancelled_error.
    ///
    /// A FIFO opens without waiting for its other end, because io_uring tries a non-blocking open first: for
    /// reading it opens at once, for writing with no reader it fails with ENXIO (open(2) would block in both
    /// cases). Open a FIFO with read | write to have neither. Not with create or truncate, for which io_uring skips
    /// that first try, nor on a network file system (NFS, 9p, FUSE: the path walk cannot be done without blocking):
    /// then the open waits for the other end in a worker thread, cancellably. On the worker-pool fallback, open(2)'s
    /// blocking rules apply, and a blocked open cannot be cancelled.
    /// `path` is a std::filesystem::path, std::string, std::string_view or const char*; the awaitable keeps a copy.
    [[nodiscard]] static open_awaitable open(detail::path_arg path, open_mode mode, unsigned permissions = 0666) {
        return open_awaitable(path.str(), detail::open_flags(mode), permissions);
    }

    // ---- reading and writing ----------------------------------------------------------------------------------

private:
    /// The part of an operation in flight that lets close() stop it (detail::fd_op, shared with the sockets): close()
    /// orphans the operations and stops each, and they hold the descriptor among themselves: the last one to end
    /// closes it.
    struct op_node : detail::fd_op<file> {
        op_node(file* f, stop_fn h) noexcept : detail::fd_op<file>(f, h) {}
        op_node(const op_node& o) noexcept : detail::fd_op<file>(o) {}

        std::string closed_path; // the file's path, for the error, once the file is gone
    };

public:
    /// The base of a file's awaitables: lists them in flight for close() to stop.
    template <class Derived>
    class file_op : public detail::fs_op<Derived>, protected op_node {
    public:
        /// An operation on `f`; it is listed for close() to stop while it is in flight.
        explicit file_op(file& f) noexcept : op_node(&f, &halt_thunk) {}
        /// A copy (a move before awaiting) is a fresh operation on the same file, not in flight.
        file_op(const file_op& o) noexcept : detail::fs_op<Derived>(o), op_node(o) {}

        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            bool suspended;
            try {
                suspended = detail::fs_op<Derived>::await_suspend(h);
            } catch (...) {
                static_cast<Derived*>(this)->abandon();
                throw;
            }
            if (suspended) this->enter(the_file()->ops_);
            return suspended;
        }

        /// The operation could not start (no worker thread for the fallback): undo what await_ready did.
        void abandon() noexcept {}

    protected:
        /// Ends the operation's bookkeeping; returns its result (see fs_op::result).
        int outcome() {
            this->leave();
            return this->result();
        }
        /// The file; null once it was closed or destroyed under the operation.
        [[nodiscard]] file* the_file() const noexcept { return this->owner(); }
        /// The file's path, also once it is gone.
        [[nodiscard]] const std::string& path() const noexcept { return the_file() ? the_file()->path_ : closed_path; }
        /// Whether an error means the file was closed under the operation.
        [[nodiscard]] bool closed_under(int err) const noexcept {
            return this->orphaned() && (err == ECANCELED || err == EINTR);
        }
        /// Throws the error of `op` that failed with errno `err`.
        [[noreturn]] void fail(int err, const char* op) const {
            if (closed_under(err)) throw detail::fs_error(ECANCELED, op, path(), "the file was closed");
            throw detail::fs_error(err, op, path());
        }

    private:
        static void halt_thunk(detail::fd_op<file>* n, file* former) noexcept {
            auto* self = static_cast<file_op*>(static_cast<op_node*>(n));
            try {
                self->closed_path = former->path_;
            } catch (...) { // out of memory: the error will name no path
            }
            self->stop();
        }
    };

    /// The awaitable of read_at() and read(): one read; the bytes read, 0 at the end of the file.
    class [[nodiscard]] read_awaitable : public file_op<read_awaitable> {
    public:
        /// Made by read_at() (at `offset`) and read() (`sequential`: at the file's position(), which it advances).
        read_awaitable(file& f, std::span<std::byte> buf, std::uint64_t offset, bool sequential)
            : file_op<read_awaitable>(f), buf_(buf), off_(offset), seq_(sequential) {}
        bool await_ready() {
            fd_ = the_file()->usable_fd("read");
            if (seq_) {
                if (the_file()->seq_busy_)
                    throw std::logic_error("coring: two concurrent sequential operations on one file");
                the_file()->check_direct(buf_.data(), buf_.size(), the_file()->pos_, "read");
                the_file()->seq_busy_ = true;
                off_ = the_file()->pos_;
            } else {
                the_file()->check_direct(buf_.data(), buf_.size(), off_, "read");
            }
            ready_ = buf_.empty(); // nothing to read, nothing to wait for
            return ready_;
        }
        /// The read could not start (no worker thread for the fallback): frees the file for the next sequential read
        /// or write.
        void abandon() noexcept {
            if (seq_) the_file()->seq_busy_ = false;
        }
        /// Reads from the page cache right here when it can (loop_options::cached_reads), else as any operation.
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            const detail::cancel_context* ctx = detail::context_of(h);
            if (!(ctx && ctx->requested) && read_cached()) return false;
            return file_op<read_awaitable>::await_suspend(h);
        }
        /// For fs_op: whether the kernel has IORING_OP_READ; otherwise pread(2) runs on the worker pool.
        bool uses_ring(const event_loop& loop) const noexcept { return loop.supports(IORING_OP_READ); }
        /// For io_op: fills the read's SQE (at most detail::max_rw_count bytes).
        void prep(io_uring_sqe* sqe) noexcept {
            io_uring_prep_read(sqe, fd_, buf_.data(),
                               static_cast<unsigned>(std::min(buf_.size(), detail::max_rw_count)), off_);
        }
        /// For fs_op, on a worker thread: pread(2); a pipe or FIFO is waited on in a way that close() and a
        /// cancellation can interrupt. Bytes read, or -errno.
        int blocking() noexcept {
            const std::size_t len = std::min(buf_.size(), detail::max_rw_count);
            const ssize_t n = ::pread(fd_, buf_.data(), len, static_cast<off_t>(off_));
            if (n >= 0) return static_cast<int>(n);
            if (errno != ESPIPE) return -errno;
            // A pipe or FIFO: no offsets, and a read may wait for ever.
            iovec iov{buf_.data(), len};
            return this->pipe_io(fd_, POLLIN, [&iov](int fd, int flags, bool) noexcept {
                const ssize_t r = ::preadv2(fd, &iov, 1, -1, flags);
                return r < 0 ? -errno : static_cast<int>(r);
            });
        }
        /// Bytes read (0 at the end of the file). Throws std::system_error naming the path, cancelled_error.
        std::size_t await_resume() {
            struct release {
                read_awaitable* self;
                ~release() {
                    if (self->seq_ && self->the_file()) self->the_file()->seq_busy_ = false;
                }
            } guard{this};
            int r;
            if (ready_) {
                r = cached_;
            } else if (cached_ > 0) {
                // The page cache gave a prefix; the rest was read the usual way. Whatever became of the rest (an
                // error, a cancellation, the file closed), the prefix was read: it is the result, a short read.
                int rest = 0;
                try {
                    rest = outcome();
                } catch (const cancelled_error&) {}
                r = cached_ + std::max(rest, 0);
                off_ -= static_cast<std::uint64_t>(cached_); // back to where the read began
            } else {
                r = outcome();
            }
            if (r < 0) fail(-r, "read");
            if (seq_ && the_file()) the_file()->pos_ = off_ + static_cast<std::uint64_t>(r);
            return static_cast<std::size_t>(r);
        }

    private:
        /// preadv2 with RWF_NOWAIT when the read would be the loop's only operation this turn: true when it was
        /// served (cached_ holds the bytes read), false to read (the rest) the usual way. A page-cache hit costs one
        /// system call where the ring costs an SQE, a CQE and a resume from the next turn; a miss costs one system call
        /// more, so a file that misses is skipped for a while, twice as long after each miss in a row (at most 127
        /// reads).
        bool read_cached() noexcept {
            file& f = *the_file();
            if (f.nowait_ == nowait_state::never) return false;
            if (f.nowait_skip_ > 0) {
                --f.nowait_skip_;
                return false;
            }
            // Large reads go the usual way: the copy would hold the loop's thread (on epoll, or without
            // IORING_OP_READ, it happens on a worker thread), and it dwarfs what the ring costs anyway.
            if (buf_.size() > max_cached_read) return false;
            event_loop& loop = event_loop::current();
            if (!loop.options().cached_reads || !loop.take_lone_inline()) return false;
            if (f.nowait_ == nowait_state::unknown) {
                // A descriptor adopted with O_DIRECT: RWF_NOWAIT does not keep a direct read from waiting for the
                // device, so such reads always go to the ring. Checked once: O_DIRECT set later with fcntl is not
                // seen (open such a file with open_mode::direct).
                const int fl = ::fcntl(fd_, F_GETFL);
                f.nowait_ = fl < 0 || (fl & O_DIRECT) ? nowait_state::never : nowait_state::usable;
                if (f.nowait_ == nowait_state::never) return false;
            }
            iovec iov{buf_.data(), std::min(buf_.size(), detail::max_rw_count)};
            const ssize_t n = ::preadv2(fd_, &iov, 1, static_cast<off_t>(off_), RWF_NOWAIT);
            if (n >= 0) {
                f.nowait_backoff_ = 0;
                loop.count_cached_read(true);
                cached_ = static_cast<int>(n);
                if (n == 0 || static_cast<std::size_t>(n) == iov.iov_len) {
                    ready_ = true;
                    return true;
                }
                // Short: the rest is not cached (or a readahead mark stopped the copy), or the file ends there. The
                // rest is read the usual way, so that a read returns what it would have returned without this path
                // (a short read in the middle of a file would surprise a caller that does not loop).
                buf_ = buf_.subspan(static_cast<std::size_t>(n));
                off_ += static_cast<std::uint64_t>(n);
                return false;
            }
            if (errno == EAGAIN) {
                loop.count_cached_read(false);
                f.nowait_skip_ = f.nowait_backoff_;
                f.nowait_backoff_ = static_cast<std::uint8_t>(std::min(2 * f.nowait_backoff_ + 1, 127));
            } else if (errno == EOPNOTSUPP || errno == ESPIPE || errno == EBADF) {
                // A file system without RWF_NOWAIT (NFS, FUSE, procfs, tmpfs on some kernels), a pipe, FIFO, socket or
                // tty (ESPIPE), a file open for writing only: the usual way from now on, which reports real errors.
                f.nowait_ = nowait_state::never;
            }
            // Anything else (EINTR; EINVAL for an offset past what the file system allows): the usual way this once.
            return false;
        }

        static constexpr std::size_t max_cached_read = 256 * 1024; // the largest read tried on the loop's thread

        std::span<std::byte> buf_;
        std::uint64_t off_;
        bool seq_;
        bool ready_ = false; // done without the kernel's help: nothing to read, or read from the page cache
        int cached_ = 0;     // the bytes read from the page cache (all, or a prefix when ready_ is false)
    };

    /// The awaitable of write_at(), write(), write_all_at() and write_all(): the bytes written (all of them for the
    /// _all forms).
    class [[nodiscard]] write_awaitable : public file_op<write_awaitable> {
    public:
        /// Made by write_at() and write_all_at() (at `offset`), write() and write_all() (`sequential`: at the file's
        /// position(), which it advances); `all` for the _all forms.
        write_awaitable(file& f, std::span<const std::byte> buf, std::uint64_t offset, bool sequential, bool all)
            : file_op<write_awaitable>(f), buf_(buf), off_(offset), seq_(sequential), all_(all) {}
        bool await_ready() {
            fd_ = the_file()->usable_fd("write");
            if (seq_) {
                if (the_file()->seq_busy_)
                    throw std::logic_error("coring: two concurrent sequential operations on one file");
                the_file()->check_direct(buf_.data(), buf_.size(), the_file()->pos_, "write");
                the_file()->seq_busy_ = true;
                off_ = the_file()->pos_;
            } else {
                the_file()->check_direct(buf_.data(), buf_.size(), off_, "write");
            }
            ready_ = buf_.empty();
            return ready_;
        }
        /// The write could not start (no worker thread for the fallback): frees the file for the next sequential read
        /// or write.
        void abandon() noexcept {
            if (seq_) the_file()->seq_busy_ = false;
        }
        /// For fs_op: whether the kernel has IORING_OP_WRITE; otherwise pwrite(2) runs on the worker pool.
        bool uses_ring(const event_loop& loop) const noexcept { return loop.supports(IORING_OP_WRITE); }
        /// For io_op: fills the SQE of the next write, for what is left (at most detail::max_rw_count bytes).
        void prep(io_uring_sqe* sqe) noexcept {
            const std::size_t n = std::min(buf_.size() - done_, detail::max_rw_count);
            io_uring_prep_write(sqe, fd_, buf_.data() + done_, static_cast<unsigned>(n), off_ + done_);
        }
        /// For io_op: a write's CQE arrived; true when the operation is over (an error, a write that took nothing,
        /// one write, or all of a write_all, or the file closed between two of its writes), false to write the rest.
        bool step(int res) noexcept {
            if (res < 0) {
                err_ = -res;
                return true;
            }
            if (res == 0) { // nothing written for a non-empty request: a loop would spin
                err_ = EIO;
                return true;
            }
            done_ += static_cast<std::size_t>(res);
            if (!all_ || done_ == buf_.size()) return true;
            if (this->orphaned()) { // the file was closed: its descriptor must not be written to again
                err_ = ECANCELED;
                return true;
            }
            return false;
        }
        /// For fs_op, on a worker thread: pwrite(2), repeated for a write_all until all is written or it fails; a pipe
        /// or FIFO is waited on in a way that close() and a cancellation can interrupt. 0, or -ECANCELED when stopped.
        int blocking() noexcept {
            do {
                if (done_ && this->stopped()) { // the file was closed between two writes of a write_all
                    err_ = ECANCELED;
                    break;
                }
                const std::size_t n = std::min(buf_.size() - done_, detail::max_rw_count);
                ssize_t r = ::pwrite(fd_, buf_.data() + done_, n, static_cast<off_t>(off_ + done_));
                if (r < 0) r = -errno;
                if (r == -ESPIPE) { // a pipe or FIFO: a write may wait for ever
                    const iovec iov{const_cast<std::byte*>(buf_.data() + done_), n};
                    r = this->pipe_io(fd_, POLLOUT, [&iov](int fd, int flags, bool may_block) noexcept {
                        iovec v = iov;
                        // Room for PIPE_BUF bytes is what POLLOUT promises: a longer write could block again.
                        if (may_block) v.iov_len = std::min<std::size_t>(v.iov_len, PIPE_BUF);
                        const ssize_t w = ::pwritev2(fd, &v, 1, -1, flags);
                        return w < 0 ? -errno : static_cast<int>(w);
                    });
                }
                if (r == -EINTR) continue;
                if (r <= 0) {
                    err_ = r < 0 ? static_cast<int>(-r) : EIO;
                    break;
                }
                done_ += static_cast<std::size_t>(r);
            } while (all_ && done_ < buf_.size());
            // Stopped (a close, or the task's cancellation): say so as the result too, for result() to tell which.
            return err_ == ECANCELED ? -ECANCELED : 0;
        }
        /// Bytes written. Throws std::system_error naming the path (after a partial write_all, the position has
        /// moved past what was written), cancelled_error.
        std::size_t await_resume() {
            struct release {
                write_awaitable* self;
                ~release() {
                    if (!self->seq_ || !self->the_file()) return;
                    self->the_file()->seq_busy_ = false;
                    self->the_file()->pos_ = self->off_ + self->done_; // also after an error or a cancellation
                }
            } guard{this};
            if (ready_) return 0;
            // Both paths keep what happened in done_ and err_, but a job the pool never ran says only its result.
            const int r = outcome();
            if (this->fell_back() && r < 0 && !err_) err_ = -r;
            if (err_) fail(err_, "write");
            return done_;
        }

    private:
        std::span<const std::byte> buf_;
        std::uint64_t off_;
        std::size_t done_ = 0;
        int err_ = 0;
        bool seq_, all_;
        bool ready_ = false;
    };

    /// Reads up to `buf.size()` bytes at `offset`; returns how many (0 at or past the end of the file).
    [[nodiscard]] read_awaitable read_at(std::span<std::byte> buf, std::uint64_t offset) {
        return read_awaitable(*this, buf, offset, false);
    }
    /// read_at into chars.
    [[nodiscard]] read_awaitable read_at(std::span<char> buf, std::uint64_t offset) {
        return read_at(std::as_writable_bytes(buf), offset);
    }
    /// Reads at position() and advances it by what was read.
    [[nodiscard]] read_awaitable read(std::span<std::byte> buf) { return read_awaitable(*this, buf, 0, true); }
    /// read into chars.
    [[nodiscard]] read_awaitable read(std::span<char> buf) { return read(std::as_writable_bytes(buf)); }

    /// Writes once at `offset`; returns how many bytes the kernel took (possibly fewer than given).
    [[nodiscard]] write_awaitable write_at(std::span<const std::byte> buf, std::uint64_t offset) {
        return write_awaitable(*this, buf, offset, false, false);
    }
    /// write_at of chars.
    [[nodiscard]] write_awaitable write_at(std::string_view s, std::uint64_t offset) {
        return write_at(std::as_bytes(std::span(s)), offset);
    }
    /// Writes all of `buf` at `offset`, as many writes as it takes.
    [[nodiscard]] write_awaitable write_all_at(std::span<const std::byte> buf, std::uint64_t offset) {
        return write_awaitable(*this, buf, offset, false, true);
    }
    /// write_all_at of chars.
    [[nodiscard]] write_awaitable write_all_at(std::string_view s, std::uint64_t offset) {
        return write_all_at(std::as_bytes(std::span(s)), offset);
    }
    /// Writes once at position() and advances it (in append mode every write goes to the end of the file).
    [[nodiscard]] write_awaitable write(std::span<const std::byte> buf) {
        return write_awaitable(*this, buf, 0, true, false);
    }
    /// write of chars.
    [[nodiscard]] write_awaitable write(std::string_view s) { return write(std::as_bytes(std::span(s))); }
    /// Writes all of `buf` at position() and advances it.
    [[nodiscard]] write_awaitable write_all(std::span<const std::byte> buf) {
        return write_awaitable(*this, buf, 0, true, true);
    }
    /// write_all of chars.
    [[nodiscard]] write_awaitable write_all(std::string_view s) { return write_all(std::as_bytes(std::span(s))); }

    // ---- sync, size, close ------------------------------------------------------------------------------------

    /// The awaitable of sync() and sync_data().
    class [[nodiscard]] sync_awaitable : public file_op<sync_awaitable> {
    public:
        /// Made by sync() and sync_data() (`data_only`: fdatasync rather than fsync).
        sync_awaitable(file& f, bool data_only) noexcept : file_op<sync_awaitable>(f), data_only_(data_only) {}
        /// The descriptor is the file's when awaited (a closed file is a std::logic_error), as for reads and writes.
        bool await_ready() {
            fd_ = the_file()->usable_fd(data_only_ ? "fdatasync" : "fsync");
            return false;
        }
        /// For fs_op: whether the kernel has IORING_OP_FSYNC; otherwise fsync(2) runs on the worker pool.
        bool uses_ring(const event_loop& loop) const noexcept { return loop.supports(IORING_OP_FSYNC); }
        /// For io_op: fills the fsync's SQE (IORING_FSYNC_DATASYNC for sync_data).
        void prep(io_uring_sqe* sqe) noexcept { io_uring_prep_fsync(sqe, fd_, data_only_ ? IORING_FSYNC_DATASYNC : 0); }
        /// For fs_op, on a worker thread: fsync(2) or fdatasync(2); 0 or -errno.
        int blocking() noexcept { return (data_only_ ? ::fdatasync(fd_) : ::fsync(fd_)) == 0 ? 0 : -errno; }
        void await_resume() {
            const int r = outcome();
            if (r < 0) fail(-r, data_only_ ? "fdatasync" : "fsync");
        }

    private:
        bool data_only_;
    };

    /// Flushes the file's data and metadata to the device (fsync).
    [[nodiscard]] sync_awaitable sync() { return sync_awaitable(*this, false); }
    /// Flushes the file's data, and only the metadata needed to read it back (fdatasync).
    [[nodiscard]] sync_awaitable sync_data() { return sync_awaitable(*this, true); }

    /// The awaitable of size().
    class [[nodiscard]] size_awaitable : public file_op<size_awaitable> {
    public:
        /// Made by size().
        explicit size_awaitable(file& f) noexcept : file_op<size_awaitable>(f) {}
        /// The descriptor is the file's when awaited (a closed file is a std::logic_error), as for reads and writes.
        bool await_ready() {
            fd_ = the_file()->usable_fd("statx");
            return false;
        }
        /// For fs_op: whether the kernel has IORING_OP_STATX; otherwise statx(2) runs on the worker pool.
        bool uses_ring(const event_loop& loop) const noexcept { return loop.supports(IORING_OP_STATX); }
        /// For io_op: fills the SQE of a statx of the descriptor that asks for the size.
        void prep(io_uring_sqe* sqe) noexcept { io_uring_prep_statx(sqe, fd_, "", AT_EMPTY_PATH, STATX_SIZE, &stx_); }
        /// For fs_op, on a worker thread: statx(2) of the descriptor; 0 or -errno.
        int blocking() noexcept { return ::statx(fd_, "", AT_EMPTY_PATH, STATX_SIZE, &stx_) == 0 ? 0 : -errno; }
        /// The file's size in bytes (0 for pipes and for /proc files, whose size is not known in advance).
        std::uint64_t await_resume() {
            const int r = outcome();
            if (r < 0) fail(-r, "statx");
            return stx_.stx_size;
        }

    private:
        struct statx stx_ {};
    };

    /// The file's current size (statx).
    [[nodiscard]] size_awaitable size() { return size_awaitable(*this); }

    /// The awaitable of close().
    class [[nodiscard]] close_awaitable : public detail::fs_op<close_awaitable> {
    public:
        /// Made by close(); the descriptor is taken from `f` when the close is awaited.
        explicit close_awaitable(file& f) noexcept : f_(&f) {}
        /// A copy (a move before awaiting) is a fresh close of the same file.
        close_awaitable(const close_awaitable& o) noexcept : detail::fs_op<close_awaitable>(o), f_(o.f_) {}
        ~close_awaitable() {
            if (fd_ >= 0) ::close(fd_); // taken from the file, but the close never reached the kernel (cancelled)
        }
        bool await_ready() {
            if (f_->fd_ < 0) return true; // closing twice is harmless
            path_ = f_->path_;            // the file may be gone when the close ends
            // With operations in flight the last of them closes the descriptor, once nothing can use it.
            if (f_->hand_over_ops()) {
                f_->fd_ = -1;
                return true;
            }
            fd_ = std::exchange(f_->fd_, -1);
            return false;
        }
        /// For fs_op: whether the kernel has IORING_OP_CLOSE; otherwise close(2) runs on the worker pool.
        bool uses_ring(const event_loop& loop) const noexcept { return loop.supports(IORING_OP_CLOSE); }
        /// For io_op: fills the close's SQE, which takes over the descriptor.
        void prep(io_uring_sqe* sqe) noexcept { io_uring_prep_close(sqe, std::exchange(fd_, -1)); }
        /// For fs_op, on a worker thread: close(2) of the descriptor, which it takes over; 0 or -errno.
        int blocking() noexcept { return ::close(std::exchange(fd_, -1)) == 0 ? 0 : -errno; }
        /// Throws std::system_error naming the path (a delayed write error, on NFS for instance); the descriptor is
        /// closed either way. A cancelled close still closes the descriptor.
        void await_resume() {
            if (!awaited_) return;
            int r = 0;
            try {
                r = result();
            } catch (const cancelled_error&) {
                if (fd_ >= 0) ::close(std::exchange(fd_, -1));
                throw;
            }
            if (r < 0 && r != -EINTR) throw detail::fs_error(-r, "close", path_);
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            awaited_ = true;
            return detail::fs_op<close_awaitable>::await_suspend(h);
        }

    private:
        file* f_;
        std::string path_;
        int fd_ = -1; // the descriptor being closed, until the SQE or the worker takes it
        bool awaited_ = false;
    };

    /// Closes the file (IORING_OP_CLOSE). Closing a closed file does nothing.
    ///
    /// Operations other tasks have in flight on the file are stopped: io_uring ones are cancelled, worker-pool ones
    /// (kernels without the opcode) are withdrawn if no worker has begun them, and woken if they wait on a pipe or a
    /// FIFO; each then ends with std::system_error ECANCELED (see the class comment). The close then returns at once
    /// and the descriptor is closed, its errors unreported, when the last of them has ended: at the loop's next turns
    /// for io_uring ones, when the system call returns for a worker's (a read of a slow disk is waited for, never
    /// interrupted).
    [[nodiscard]] close_awaitable close() noexcept { return close_awaitable(*this); }

    // ---- state ------------------------------------------------------------------------------------------------

    /// Whether a descriptor is open.
    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    /// The descriptor, for system calls coring does not wrap; the file still owns it.
    [[nodiscard]] int native_handle() const noexcept { return fd_; }
    /// The path the file was opened with (for messages).
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    /// Where read(), write() and write_all() go next.
    [[nodiscard]] std::uint64_t position() const noexcept { return pos_; }
    /// Moves position() (no I/O; past the end is allowed, as with lseek).
    void seek(std::uint64_t position) noexcept { pos_ = position; }
    /// Whether the file was opened with open_mode::direct.
    [[nodiscard]] bool direct() const noexcept { return direct_; }
    /// O_DIRECT's alignment of buffer addresses for this file (from statx, 512 when the kernel does not say).
    [[nodiscard]] std::uint32_t direct_memory_alignment() const noexcept { return mem_align_; }
    /// O_DIRECT's alignment of file offsets and transfer lengths for this file (from statx, 512 when the kernel does
    /// not say).
    [[nodiscard]] std::uint32_t direct_io_alignment() const noexcept { return io_align_; }

private:
    /// A close nobody awaits: the kernel closes the descriptor while the loop goes on; without a loop, close(2).
    struct detached_close final : detail::op_base {
        explicit detached_close(int f) noexcept : detail::op_base(&do_prep, &do_complete), fd(f) {}
        static void do_prep(detail::op_base* o, io_uring_sqe* sqe) noexcept {
            io_uring_prep_close(sqe, static_cast<detached_close*>(o)->fd);
        }
        static void do_complete(detail::op_base* o, int, unsigned) noexcept { delete static_cast<detached_close*>(o); }
        int fd;
    };

    /// Closes the descriptor, stopping the operations in flight first; with any, the last of them closes it.
    void close_detached() noexcept {
        const bool handed_over = hand_over_ops();
        if (fd_ < 0) return;
        const int fd = std::exchange(fd_, -1);
        if (!handed_over) close_fd(fd);
    }

    static void close_fd(int fd) noexcept {
        event_loop* loop = detail::current_loop;
        if (loop && loop->supports(IORING_OP_CLOSE))
            if (auto* op = new (std::nothrow) detached_close(fd)) return loop->start(op);
        ::close(fd);
    }

    /// Orphans and stops every operation in flight; true when there was any (they now hold the descriptor).
    bool hand_over_ops() noexcept {
        if (ops_.empty()) return false;
        seq_busy_ = false;
        return ops_.hand_over(this);
    }

    friend class detail::fd_op<file>;
    /// Called by the last operation in flight to end after close() handed it the descriptor.
    static void close_handed_fd(int fd) noexcept { close_fd(fd); }

    int usable_fd(const char* op) const {
        if (fd_ < 0) throw std::logic_error(detail::str_cat("coring: ", op, " on a closed file"));
        return fd_;
    }

    /// O_DIRECT transfers must be aligned; the kernel would only say EINVAL, so say which rule was broken.
    void check_direct(const std::byte* p, std::size_t n, std::uint64_t offset, const char* op) const {
        if (!direct_) return;
        if (reinterpret_cast<std::uintptr_t>(p) % mem_align_ == 0 && offset % io_align_ == 0 && n % io_align_ == 0)
            return;
        throw detail::fs_error(EINVAL, op, path_,
                               detail::str_cat("open_mode::direct needs the buffer address aligned to ",
                                               std::to_string(mem_align_), " bytes, and the offset and length to ",
                                               std::to_string(io_align_), "; see aligned_buffer"));
    }

    int fd_ = -1;
    std::string path_;
    std::uint64_t pos_ = 0;
    std::uint32_t mem_align_ = 512, io_align_ = 512;
    detail::fd_op_list<file> ops_; // operations in flight, for close() to stop
    bool direct_ = false;
    bool seq_busy_ = false; // a sequential operation is in flight
    // Whether reads may try the page cache on the loop's thread (read_awaitable::read_cached): unknown until the
    // first try for an adopted descriptor, which may have been opened with O_DIRECT.
    enum class nowait_state : std::uint8_t { unknown, usable, never };
    nowait_state nowait_ = nowait_state::unknown;
    std::uint8_t nowait_skip_ = 0;    // reads left to send the usual way after a miss
    std::uint8_t nowait_backoff_ = 0; // the skip the next miss in a row sets
};

} // namespace coring
