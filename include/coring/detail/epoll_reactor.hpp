#pragma once

#include <coring/detail/op.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <vector>

namespace coring::detail {

/// The epoll backend's engine: performs the operations coring describes as SQEs with non-blocking system calls,
/// parking each one that would block on its descriptor until epoll says the descriptor is ready.
///
/// One description per operation for both backends: an operation's prep fills an io_uring SQE, which io_uring runs
/// and this class interprets (RECV, SEND, RECVMSG, SENDMSG, ACCEPT, CONNECT, POLL_ADD, and READ/WRITE on descriptors
/// without offsets: eventfd, signalfd, pipes). File operations never come here: the loop reports their opcodes
/// unsupported, so they run on the worker pool as on a kernel without them.
///
/// Readiness: every descriptor is registered once, edge-triggered, for both directions, when an operation on it
/// first finds it not ready; the registration stays until the descriptor is closed (forget()). Per direction the
/// class keeps what it knows: "ready" until a call says EAGAIN (or a stream receive or send comes back short, which
/// means the socket was drained or filled, as tokio assumes), then "not ready" until epoll reports an edge. So an
/// operation on a descriptor known not ready parks without a system call, and a request-response exchange costs the
/// same calls as a hand-written epoll server: epoll_wait, recv, send.
///
/// Parked operations wait in FIFO lists per descriptor and direction (op_base::prev_/next_), retried in order on an
/// edge until one would block again. A cancellation takes a parked operation off its list before any system call:
/// it ends with -ECANCELED, having done nothing. Loop thread only.
class epoll_reactor {
public:
    /// perform()'s result for an operation that now waits for readiness.
    static constexpr int parked = INT_MIN;
    /// attempt()'s result for a call that would block (distinct from an EAGAIN that is the operation's own result).
    static constexpr int would_block = INT_MIN + 1;
    /// Called for every parked operation that finished on a retry (or failed because its descriptor was closed).
    using done_fn = void (*)(void* ctx, op_base* op, int res) noexcept;

    epoll_reactor(done_fn done, void* ctx) : done_(done), ctx_(ctx) {
        epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (epfd_ < 0) throw std::system_error(errno, std::system_category(), "coring: epoll_create1");
    }
    epoll_reactor(const epoll_reactor&) = delete;
    epoll_reactor& operator=(const epoll_reactor&) = delete;
    ~epoll_reactor() { ::close(epfd_); }

    /// Whether this backend performs `opcode` itself (what event_loop::supports() reports on epoll).
    [[nodiscard]] static bool performs(unsigned opcode) noexcept {
        switch (opcode) {
        case IORING_OP_RECV:
        case IORING_OP_SEND:
        case IORING_OP_RECVMSG:
        case IORING_OP_SENDMSG:
        case IORING_OP_ACCEPT:
        case IORING_OP_CONNECT:
        case IORING_OP_POLL_ADD:
            return true;
        default:
            return false;
        }
    }

    /// Makes the operation's next attempt now: its result (>= 0 or -errno), or `parked` when it must wait for its
    /// descriptor (then it is listed there and ends through done_fn or unpark()).
    int perform(op_base* op) noexcept {
        io_uring_sqe sqe{};
        op->prep_(op, &sqe);
        const int fd = sqe.fd;
        if (fd < 0) return -EBADF;
        if (sqe.flags & (IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT)) return -EOPNOTSUPP;
        const bool out = wants_out(sqe);
        fd_state& st = entry(fd);
        // A poll always looks (poll() is cheap, and its mask may span both directions, which the flags do not).
        if (sqe.opcode != IORING_OP_POLL_ADD && st.registered && !(out ? st.writable : st.readable))
            return park(op, fd, out, false, false);
        const int r = attempt(sqe, fd);
        if (r != would_block) return r;
        return park(op, fd, out, false, sqe.opcode == IORING_OP_POLL_ADD);
    }

    /// Takes a parked operation off its descriptor (a cancellation). False when it was not parked.
    bool unpark(op_base* op) noexcept {
        if (op->park_fd_ < 0) return false;
        unlink(op);
        return true;
    }

    /// Operations parked now.
    [[nodiscard]] std::size_t parked_count() const noexcept { return parked_; }

    /// Waits for readiness (`timeout` null: without limit) and retries the operations parked on the descriptors that
    /// became ready, calling done_fn for each that finished. Returns how many events arrived; 0 on a signal.
    int wait(const timespec* timeout) {
        epoll_event evs[max_events];
        int n;
#ifdef __NR_epoll_pwait2
        if (have_pwait2_) {
            // Raw: glibc has a wrapper only from 2.35 on. x86-64's timespec is the kernel's __kernel_timespec.
            n = static_cast<int>(::syscall(__NR_epoll_pwait2, epfd_, evs, max_events, timeout, nullptr, 0));
            // Before Linux 5.11 (ENOSYS), or refused by a seccomp profile older than the call (EPERM, as older Docker
            // and snap profiles do with calls they do not know): millisecond waits, rounded up so as never to wake
            // early.
            if (n < 0 && (errno == ENOSYS || errno == EPERM)) {
                have_pwait2_ = false;
                return wait(timeout);
            }
        } else
#endif
        {
            int ms = -1;
            if (timeout) {
                const long long total =
                    (static_cast<long long>(timeout->tv_sec) * 1000000000LL + timeout->tv_nsec + 999999LL) / 1000000LL;
                ms = total > INT_MAX ? INT_MAX : static_cast<int>(total);
            }
            n = ::epoll_wait(epfd_, evs, max_events, ms);
        }
        if (n < 0) {
            if (errno == EINTR) return 0;
            throw std::system_error(errno, std::system_category(), "coring: epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            const int fd = static_cast<int>(evs[i].data.u64);
            if (static_cast<std::size_t>(fd) >= table_.size()) continue;
            const std::uint32_t e = evs[i].events;
            // EPOLLPRI (urgent data, a sysfs or cgroup file's change) only ever matters to polls, which wait with the
            // readers.
            if (e & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                table_[fd].readable = true;
                if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) table_[fd].read_final = true;
                retry(fd, false);
            }
            if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
                table_[fd].writable = true;
                if (e & (EPOLLHUP | EPOLLERR)) table_[fd].write_final = true;
                retry(fd, true);
                retry_output_polls(fd);
            }
        }
        return n;
    }

    /// The descriptor is being closed, or is new (a stale entry from a number closed behind coring's back must not
    /// survive): its state is reset, and operations still parked on it end with -EBADF (closing a descriptor removes
    /// it from epoll, so they would otherwise never wake). Closing does the rest: epoll drops the registration itself.
    void forget(int fd) noexcept {
        if (fd < 0 || static_cast<std::size_t>(fd) >= table_.size()) return;
        for (bool out : {false, true}) {
            while (op_base* op = head(table_[fd], out)) {
                unlink(op);
                done_(ctx_, op, -EBADF);
            }
        }
        table_[fd] = fd_state{};
    }

private:
    struct fd_state {
        op_base* readers = nullptr; // parked operations, FIFO: head and tail
        op_base* readers_tail = nullptr;
        op_base* writers = nullptr;
        op_base* writers_tail = nullptr;
        bool registered = false; // in the epoll set (edge-triggered, both directions)
        bool readable = true;    // as far as we know; true until a call says otherwise
        bool writable = true;
        bool nonblocking =
            false; // O_NONBLOCK checked (accept, connect, read, write need it; MSG_DONTWAIT covers the rest)
        bool connecting = false; // a connect() said EINPROGRESS: the next writable edge ends it
        // The peer's end of the stream (RDHUP), a hang-up or an error was reported: from then on every call returns
        // at once (0, the error), and no edge would ever come again, so that direction stays ready.
        bool read_final = false;
        bool write_final = false;
    };

    /// A call said "not ready" for this direction (EAGAIN, a short transfer): the next one waits for an edge.
    static void not_ready(fd_state& st, bool out) noexcept {
        if (out) st.writable = st.write_final;
        else st.readable = st.read_final;
    }

    static constexpr int max_events = 256;

    static bool wants_out(const io_uring_sqe& s) noexcept {
        switch (s.opcode) {
        case IORING_OP_SEND:
        case IORING_OP_SENDMSG:
        case IORING_OP_CONNECT:
        case IORING_OP_WRITE:
            return true;
        case IORING_OP_POLL_ADD:
            return !(s.poll32_events & POLLIN) && (s.poll32_events & POLLOUT);
        default:
            return false;
        }
    }

    fd_state& entry(int fd) {
        const auto i = static_cast<std::size_t>(fd);
        if (i >= table_.size()) table_.resize(std::max(i + 1, table_.size() * 2));
        return table_[i];
    }
    static op_base*& head(fd_state& st, bool out) noexcept { return out ? st.writers : st.readers; }
    static op_base*& tail(fd_state& st, bool out) noexcept { return out ? st.writers_tail : st.readers_tail; }

    /// Lists the operation on its descriptor (at the front when it is put back after a retry), registering the
    /// descriptor first if needed. An error there (a descriptor epoll refuses) is the operation's result instead.
    /// `poll`: the operation is a POLL_ADD (its caller has the SQE at hand).
    int park(op_base* op, int fd, bool out, bool front, bool poll) noexcept {
        fd_state& st = table_[static_cast<std::size_t>(fd)];
        not_ready(st, out);
        // A poll's descriptor belongs to someone else, who may have closed it and got the number again for another
        // file without telling coring: (re)adding costs a call, and EEXIST says it was there all along.
        if (!st.registered || poll) {
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP | EPOLLET;
            ev.data.u64 = static_cast<std::uint64_t>(fd);
            if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0 && errno != EEXIST)
                return errno == EPERM ? -EOPNOTSUPP : -errno;
            st.registered = true;
        }
        op->park_fd_ = fd;
        op->park_out_ = out;
        op_base*& h = head(st, out);
        op_base*& t = tail(st, out);
        if (front) {
            op->prev_ = nullptr;
            op->next_ = h;
            if (h) h->prev_ = op;
            else t = op;
            h = op;
        } else {
            op->next_ = nullptr;
            op->prev_ = t;
            if (t) t->next_ = op;
            else h = op;
            t = op;
        }
        ++parked_;
        return parked;
    }

    void unlink(op_base* op) noexcept {
        fd_state& st = table_[static_cast<std::size_t>(op->park_fd_)];
        op_base*& h = head(st, op->park_out_);
        op_base*& t = tail(st, op->park_out_);
        if (op->prev_) op->prev_->next_ = op->next_;
        else h = op->next_;
        if (op->next_) op->next_->prev_ = op->prev_;
        else t = op->prev_;
        op->prev_ = op->next_ = nullptr;
        op->park_fd_ = -1;
        --parked_;
    }

    /// Retries the operations parked on `fd` in one direction, in order, while the descriptor stays ready. A
    /// finished one's completion may start others (a write_all's next send): the table is re-read every time.
    void retry(int fd, bool out) noexcept {
        for (;;) {
            fd_state& st = table_[static_cast<std::size_t>(fd)];
            if (!(out ? st.writable : st.readable)) return;
            op_base* op = head(st, out);
            if (!op) return;
            unlink(op);
            io_uring_sqe sqe{};
            op->prep_(op, &sqe);
            const int r = attempt(sqe, fd);
            if (r == would_block) {
                if (park(op, fd, out, true, sqe.opcode == IORING_OP_POLL_ADD) == parked) return;
                done_(ctx_, op, -EBADF); // cannot happen: the descriptor is registered
                continue;
            }
            done_(ctx_, op, r);
        }
    }

    /// A poll for input and output waits on the readers list (wants_out is false for it): a writable edge retries
    /// those too. One that is still not ready goes back to the front, behind the walk.
    void retry_output_polls(int fd) noexcept {
        if (static_cast<std::size_t>(fd) >= table_.size()) return;
        for (op_base* op = table_[static_cast<std::size_t>(fd)].readers; op;) {
            op_base* const next = op->next_;
            io_uring_sqe sqe{};
            op->prep_(op, &sqe);
            if (sqe.opcode == IORING_OP_POLL_ADD && (sqe.poll32_events & POLLOUT)) {
                unlink(op);
                const int r = attempt(sqe, fd);
                if (r != would_block) done_(ctx_, op, r);
                else if (park(op, fd, false, true, true) != parked) done_(ctx_, op, -EBADF);
            }
            op = next;
        }
    }

    bool make_nonblocking(int fd) noexcept {
        fd_state& st = table_[static_cast<std::size_t>(fd)];
        if (st.nonblocking) return true;
        const int fl = ::fcntl(fd, F_GETFL);
        if (fl < 0) return false;
        if (!(fl & O_NONBLOCK) && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return false;
        st.nonblocking = true;
        return true;
    }

    /// One non-blocking system call for the SQE: its result, would_block (the ready flag of that
    /// direction is cleared when the call says so), or another -errno.
    int attempt(const io_uring_sqe& s, int fd) noexcept {
        void* addr = reinterpret_cast<void*>(static_cast<std::uintptr_t>(s.addr));
        long r;
        for (;;) {
            switch (s.opcode) {
            case IORING_OP_RECV:
                r = ::recv(fd, addr, s.len, static_cast<int>(s.msg_flags) | MSG_DONTWAIT);
                // A stream receive that came back short drained the socket: the next one waits for an edge. Not
                // the end of the stream (0), which every later receive reports at once, with no edge to wait for.
                if (r > 0 && static_cast<std::size_t>(r) < s.len && !(s.msg_flags & MSG_PEEK))
                    not_ready(table_[static_cast<std::size_t>(fd)], false);
                break;
            case IORING_OP_SEND:
                r = ::send(fd, addr, s.len, static_cast<int>(s.msg_flags) | MSG_DONTWAIT | MSG_NOSIGNAL);
                if (r >= 0 && static_cast<std::size_t>(r) < s.len)
                    not_ready(table_[static_cast<std::size_t>(fd)], true);
                break;
            case IORING_OP_RECVMSG:
                r = ::recvmsg(fd, static_cast<msghdr*>(addr), static_cast<int>(s.msg_flags) | MSG_DONTWAIT);
                break;
            case IORING_OP_SENDMSG:
                r = ::sendmsg(fd, static_cast<const msghdr*>(addr),
                              static_cast<int>(s.msg_flags) | MSG_DONTWAIT | MSG_NOSIGNAL);
                break;
            case IORING_OP_ACCEPT: {
                if (!make_nonblocking(fd)) return -errno;
                auto* len = reinterpret_cast<socklen_t*>(static_cast<std::uintptr_t>(s.addr2));
                r = ::accept4(fd, static_cast<sockaddr*>(addr), len, static_cast<int>(s.accept_flags));
                if (r >= 0) {
                    // A new descriptor: whatever the table knew about an earlier one with this number is stale.
                    forget(static_cast<int>(r));
                    entry(static_cast<int>(r)).nonblocking = (s.accept_flags & SOCK_NONBLOCK) != 0;
                }
                break;
            }
            case IORING_OP_CONNECT: {
                fd_state& st = table_[static_cast<std::size_t>(fd)];
                if (st.connecting) {
                    // The writable edge after EINPROGRESS: the connection is made or has failed.
                    st.connecting = false;
                    int err = 0;
                    socklen_t len = sizeof err;
                    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return -errno;
                    return -err;
                }
                if (!make_nonblocking(fd)) return -errno;
                r = ::connect(fd, static_cast<const sockaddr*>(addr), static_cast<socklen_t>(s.off));
                if (r < 0 && errno == EINPROGRESS) {
                    table_[static_cast<std::size_t>(fd)].connecting = true;
                    not_ready(table_[static_cast<std::size_t>(fd)], true);
                    return would_block;
                }
                // A Unix socket whose listener's backlog is full: no readiness ever announces room there.
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -EAGAIN;
                break;
            }
            case IORING_OP_POLL_ADD: {
                pollfd p{fd, static_cast<short>(s.poll32_events), 0};
                r = ::poll(&p, 1, 0);
                if (r > 0) return (p.revents & POLLNVAL) ? -EBADF : p.revents; // as io_uring reports a closed one
                if (r == 0) {
                    not_ready(table_[static_cast<std::size_t>(fd)], wants_out(s));
                    return would_block;
                }
                break;
            }
            case IORING_OP_READ:
                if (!make_nonblocking(fd)) return -errno;
                r = ::read(fd, addr, s.len);
                break;
            case IORING_OP_WRITE:
                if (!make_nonblocking(fd)) return -errno;
                r = ::write(fd, addr, s.len);
                break;
            case IORING_OP_SHUTDOWN:
                r = ::shutdown(fd, static_cast<int>(s.len));
                break;
            default:
                return -EOPNOTSUPP;
            }
            if (r >= 0) return static_cast<int>(r);
            if (errno == EINTR) continue;
            if (errno == EWOULDBLOCK || errno == EAGAIN) {
                not_ready(table_[static_cast<std::size_t>(fd)], wants_out(s));
                return would_block;
            }
            return -errno;
        }
    }

    done_fn done_;
    void* ctx_;
    int epfd_ = -1;
    bool have_pwait2_ = true;
    std::size_t parked_ = 0;
    std::vector<fd_state> table_; // by descriptor number
};

} // namespace coring::detail
