#pragma once

#include <coring/detail/io_op.hpp>
#include <coring/detail/owner_check.hpp>
#include <coring/detail/provided_buffers.hpp>
#include <coring/detail/sigpipe.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/error.hpp>
#include <coring/net/address.hpp>
#include <coring/net/detail/receiver.hpp>
#include <coring/net/detail/socket.hpp>
#include <coring/net/stream_errors.hpp>
#include <coring/runtime/event_loop.hpp>

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace coring {

/// A connected byte stream over a socket (TCP or Unix-domain): asyncio's StreamReader and StreamWriter in one.
///
/// Every transfer is one io_uring operation (recv, send with MSG_NOSIGNAL, shutdown, close) whose state lives in the
/// awaiting frame; no readiness polling, no system call of its own. read() goes straight into the caller's buffer;
/// read_until() and read_exact() use a read-ahead buffer of the stream (allocated on first use, at most limit()
/// bytes, 64 KiB by default).
///
/// Cancellation (cancel(), a timeout): bytes never go missing. A read that completed before its cancellation took
/// effect returns them; read_exact() and read_until() keep whatever arrived in the read-ahead buffer for the next
/// read. A write_all() cancelled half-way has sent a prefix of its buffer (the rest is not sent).
///
/// enable_multishot() switches the reading side to a multishot receive that stays armed between reads (see
/// detail::receiver): for servers with many request/response connections it saves a submission and a poll arming
/// per message. Reads behave the same either way.
///
/// One read and one write may be in flight at once (a reader task and a writer task); two concurrent reads or two
/// concurrent writes are a std::logic_error. Used on the loop's thread. The stream must outlive its operations;
/// moving or destroying it while one is in flight aborts the process with a message. The destructor closes the
/// descriptor if close() was not awaited.
class stream {
public:
    /// limit() of a new stream: 64 KiB.
    static constexpr std::size_t default_limit = 64 * 1024;

    /// No socket.
    stream() noexcept = default;
    /// Adopts a connected socket; `peer` is kept for error messages and peer_address().
    explicit stream(int fd, address peer = {}) noexcept : fd_(fd), peer_(std::move(peer)) { detail::fresh_fd(fd); }
    /// Adopts one end of a pipe (a child process's stdin, stdout or stderr): reads and writes are IORING_OP_READ
    /// and IORING_OP_WRITE instead of socket receives and sends, shutdown() closes the end (what a reader sees as
    /// the end of the stream), and there is no multishot receive. A write to a pipe nobody reads any more is a
    /// std::system_error (EPIPE), not a SIGPIPE: this blocks SIGPIPE in the calling thread unless the application
    /// ignores or handles it.
    [[nodiscard]] static stream from_pipe(int fd) noexcept {
        // Blocked for the calling (loop) thread for good, when its disposition is the default (detail/sigpipe.hpp):
        // threads it starts later and children started other than by process::spawn inherit the mask.
        detail::block_sigpipe();
        stream s(fd);
        s.pipe_ = true;
        return s;
    }
    /// Moves the socket, the buffered bytes and the multishot receive; `o` is left closed. Aborts the process if `o`
    /// has a read or write in flight.
    stream(stream&& o) noexcept
        : fd_(std::exchange(o.fd_, -1)),
          peer_(std::move(o.peer_)),
          buf_(std::move(o.buf_)),
          cap_(std::exchange(o.cap_, 0)),
          begin_(std::exchange(o.begin_, 0)),
          end_(std::exchange(o.end_, 0)),
          limit_(o.limit_),
          rx_(std::exchange(o.rx_, nullptr)),
          auto_checked_(o.auto_checked_),
          pipe_(o.pipe_),
          owner_(std::exchange(o.owner_, nullptr)) {
        o.check_idle("moved");
        if (rx_) rx_->set_owner(this);
    }
    /// Closes this stream's socket (at once, not through the ring), then takes over `o`'s; `o` is left closed.
    /// Aborts the process if either stream has a read or write in flight.
    stream& operator=(stream&& o) noexcept {
        if (this != &o) {
            check_idle("assigned to");
            o.check_idle("moved");
            close_now();
            fd_ = std::exchange(o.fd_, -1);
            peer_ = std::move(o.peer_);
            buf_ = std::move(o.buf_);
            cap_ = std::exchange(o.cap_, 0);
            begin_ = std::exchange(o.begin_, 0);
            end_ = std::exchange(o.end_, 0);
            limit_ = o.limit_;
            rx_ = std::exchange(o.rx_, nullptr);
            if (rx_) rx_->set_owner(this);
            auto_checked_ = o.auto_checked_;
            pipe_ = o.pipe_;
            owner_ = std::exchange(o.owner_, nullptr);
        }
        return *this;
    }
    stream(const stream&) = delete;
    stream& operator=(const stream&) = delete;
    ~stream() {
        check_idle("destroyed");
        close_now();
    }

    // ---- reading -----------------------------------------------------------------------------------------------

    /// The awaitable of read(): co_await yields the bytes read, 0 at the end of the stream.
    class [[nodiscard]] read_awaitable : public detail::io_op<read_awaitable> {
    public:
        /// Made by read(); a copy (before it is awaited) is a fresh read.
        read_awaitable(stream& s, std::span<std::byte> buf) noexcept : s_(&s), buf_(buf) {}
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            if (s_->use_rx()) {
                wait_.direct = buf_;
                return s_->rx_wait(wait_, this, &ready_thunk, h);
            }
            return suspend(this, s_->reading_, s_->read_op_, h);
        }
        bool await_ready() {
            s_->begin_op(s_->reading_, "read");
            if (s_->buffered() == 0 && !buf_.empty()) return false;
            n_ = s_->take(buf_);
            s_->reading_ = false;
            return true;
        }
        /// For task dumps: "read on fd 7 (peer 10.0.0.2:5432)".
        void describe_wait(std::string& out) const { s_->describe_io("read", out); }
        /// Fills the SQE: a recv (on a pipe, a read) into the caller's buffer. Called by the loop.
        void prep(io_uring_sqe* sqe) noexcept { s_->prep_in(sqe, buf_.data(), buf_.size()); }
        /// Handles the completion: keeps the byte count or the error; one recv is the whole read.
        bool step(int res) noexcept {
            if (res >= 0) n_ = static_cast<std::size_t>(res);
            else err_ = -res;
            return true;
        }
        /// Bytes read; 0 at the end of the stream.
        std::size_t await_resume() {
            s_->reading_ = false;
            s_->read_op_ = nullptr;
            if (cancelled() || wait_.cancelled) throw cancelled_error();
            if (err_) throw s_->in_error(err_);
            return n_;
        }

    private:
        static bool ready_thunk(void* p) noexcept {
            auto* self = static_cast<read_awaitable*>(p);
            if (self->wait_.direct_got) {
                self->n_ = self->wait_.direct_got;
                return true;
            }
            self->n_ = self->s_->take(self->buf_);
            if (self->n_) return true;
            return self->s_->rx_over(self->err_);
        }

        stream* s_;
        std::span<std::byte> buf_;
        std::size_t n_ = 0;
        int err_ = 0;
        detail::rx_waiter wait_;
    };

    /// Reads what is available, at most buf.size() bytes (asyncio's read(n)); 0 at the end of the stream. Waits
    /// until at least one byte or the end arrives. Bytes already in the read-ahead buffer come first.
    /// Throws std::system_error (errno, "recv from <peer>") and cancelled_error.
    [[nodiscard]] read_awaitable read(std::span<std::byte> buf) noexcept { return read_awaitable(*this, buf); }
    /// read() into chars.
    [[nodiscard]] read_awaitable read(std::span<char> buf) noexcept { return read(std::as_writable_bytes(buf)); }

    /// The awaitable of read_exact(): co_await yields nothing once the buffer is full.
    class [[nodiscard]] read_exact_awaitable : public detail::io_op<read_exact_awaitable> {
    public:
        /// Made by read_exact(); a copy (before it is awaited) is a fresh read.
        read_exact_awaitable(stream& s, std::span<std::byte> buf) noexcept : s_(&s), buf_(buf) {}
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            if (s_->use_rx()) return s_->rx_wait(wait_, this, &ready_thunk, h);
            return suspend(this, s_->reading_, s_->read_op_, h);
        }
        bool await_ready() {
            s_->begin_op(s_->reading_, "read");
            got_ = s_->take(buf_);
            if (got_ < buf_.size()) return false;
            s_->reading_ = false;
            return true;
        }
        /// For task dumps: "read_exact on fd 7 (peer 10.0.0.2:5432)".
        void describe_wait(std::string& out) const { s_->describe_io("read_exact", out); }
        /// Fills the SQE: a recv (on a pipe, a read) into the part of the buffer still empty. Called by the loop.
        void prep(io_uring_sqe* sqe) noexcept { s_->prep_in(sqe, buf_.data() + got_, buf_.size() - got_); }
        /// Handles a completion: adds the bytes and asks for another recv until the buffer is full; the end of the
        /// stream, an error, or close() between two pieces ends the read.
        bool step(int res) noexcept {
            if (res > 0) {
                got_ += static_cast<std::size_t>(res);
                if (got_ < buf_.size() && s_->fd_ < 0) {
                    // close() cancelled this read while a piece of it was completing: stop, as the cancel meant,
                    // rather than read again from a closed descriptor (EBADF).
                    err_ = ECANCELED;
                    return true;
                }
                return got_ == buf_.size();
            }
            if (res == 0) eof_ = true;
            else err_ = -res;
            return true;
        }
        void await_resume() {
            s_->reading_ = false;
            s_->read_op_ = nullptr;
            const bool cancelled_now = cancelled() || wait_.cancelled;
            if (!cancelled_now && !err_ && !eof_) return;
            // Whatever arrived goes back to the stream: the next read returns it, nothing is lost.
            s_->unread(buf_.first(got_));
            if (cancelled_now) throw cancelled_error();
            if (err_) throw s_->in_error(err_);
            throw incomplete_read_error(buf_.size(), got_);
        }

    private:
        static bool ready_thunk(void* p) noexcept {
            auto* self = static_cast<read_exact_awaitable*>(p);
            self->got_ += self->s_->take(self->buf_.subspan(self->got_));
            if (self->got_ == self->buf_.size()) return true;
            if (!self->s_->rx_over(self->err_)) return false;
            if (!self->err_) self->eof_ = true;
            return true;
        }

        stream* s_;
        std::span<std::byte> buf_;
        std::size_t got_ = 0;
        int err_ = 0;
        bool eof_ = false;
        detail::rx_waiter wait_;
    };

    /// Fills `buf` completely (asyncio's readexactly). Throws incomplete_read_error when the stream ends first, and
    /// std::system_error or cancelled_error; in every case the bytes that arrived stay in the stream.
    [[nodiscard]] read_exact_awaitable read_exact(std::span<std::byte> buf) noexcept {
        return read_exact_awaitable(*this, buf);
    }
    /// read_exact() into chars.
    [[nodiscard]] read_exact_awaitable read_exact(std::span<char> buf) noexcept {
        return read_exact(std::as_writable_bytes(buf));
    }

    /// The awaitable of read_until(): co_await yields the line as a std::string.
    class [[nodiscard]] read_until_awaitable : public detail::io_op<read_until_awaitable> {
    public:
        /// Made by read_until(); throws std::invalid_argument for an empty delimiter. A copy (before it is awaited)
        /// is a fresh read.
        read_until_awaitable(stream& s, std::string delim) : s_(&s), delim_(std::move(delim)) {
            if (delim_.empty()) throw std::invalid_argument("coring: read_until: empty delimiter");
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            if (s_->use_rx()) return s_->rx_wait(wait_, this, &ready_thunk, h);
            return suspend(this, s_->reading_, s_->read_op_, h);
        }
        bool await_ready() {
            s_->begin_op(s_->reading_, "read");
            if (!scan()) return false;
            s_->reading_ = false;
            return true;
        }
        /// For task dumps: "read_until on fd 7 (peer 10.0.0.2:5432)".
        void describe_wait(std::string& out) const { s_->describe_io("read_until", out); }
        /// Fills the SQE: a recv (on a pipe, a read) into the free room of the stream's read-ahead buffer. Called by
        /// the loop.
        void prep(io_uring_sqe* sqe) noexcept { s_->prep_in(sqe, s_->buf_.get() + s_->end_, room_); }
        /// Handles a completion: looks for the delimiter in what is buffered and asks for another recv until it is
        /// found or limit() is reached; at the end of the stream the rest is the result.
        bool step(int res) noexcept {
            if (res > 0) {
                s_->end_ += static_cast<std::size_t>(res);
                const bool over = scan();
                if (!over && s_->fd_ < 0) {
                    err_ = ECANCELED; // closed meanwhile (see read_exact)
                    return true;
                }
                return over;
            }
            if (res == 0) {
                // The end: what is left, without a delimiter (then "" on the next call), as asyncio's readuntil.
                result_.assign(s_->buf_.get() + s_->begin_, s_->buffered());
                s_->begin_ = s_->end_ = 0;
                done_ = true;
            } else {
                err_ = -res;
            }
            return true;
        }
        /// The line, ending with the delimiter; at the end of the stream the rest without it, then "".
        std::string await_resume() {
            s_->reading_ = false;
            s_->read_op_ = nullptr;
            if (cancelled() || wait_.cancelled) throw cancelled_error();
            if (err_) throw s_->in_error(err_);
            if (overrun_) throw limit_overrun_error(s_->limit_);
            if (nomem_) throw std::bad_alloc();
            return std::move(result_);
        }

    private:
        static bool ready_thunk(void* p) noexcept {
            auto* self = static_cast<read_until_awaitable*>(p);
            if (self->scan()) return true;
            if (!self->s_->rx_over(self->err_)) return false;
            if (!self->err_) self->step(0); // the end: the rest without a delimiter
            return true;
        }

        // Looks for the delimiter in what is buffered; true when the wait is over (found, or the buffer is at its
        // limit). Otherwise makes room for the next recv (room_).
        bool scan() noexcept {
            const std::size_t n = s_->buffered();
            const char* base = s_->buf_.get() + s_->begin_;
            if (n >= delim_.size()) {
                const std::size_t from = searched_ > delim_.size() - 1 ? searched_ - (delim_.size() - 1) : 0;
                const std::string_view hay(base, n);
                const std::size_t at = hay.find(delim_, from);
                if (at != std::string_view::npos) {
                    const std::size_t len = at + delim_.size();
                    if (len > s_->limit_) { // found, but longer than the limit (asyncio's rule too)
                        overrun_ = true;
                        return true;
                    }
                    try {
                        result_.assign(base, len);
                    } catch (...) {
                        nomem_ = true;
                        return true;
                    }
                    s_->begin_ += len;
                    if (s_->begin_ == s_->end_) s_->begin_ = s_->end_ = 0;
                    return true;
                }
                searched_ = n;
            }
            if (n >= s_->limit_) {
                overrun_ = true;
                return true;
            }
            if (!s_->make_room()) {
                nomem_ = true;
                return true;
            }
            room_ = std::min(s_->cap_ - s_->end_, s_->limit_ - s_->buffered());
            return false;
        }

        stream* s_;
        std::string delim_;
        std::string result_;
        std::size_t searched_ = 0; // bytes already searched (from begin_)
        std::size_t room_ = 0;     // bytes the next recv may write at end_
        int err_ = 0;
        bool overrun_ = false;
        bool nomem_ = false;
        bool done_ = false;
        detail::rx_waiter wait_;
    };

    /// Reads up to and including `delim` (asyncio's readuntil / readline with "\n"). At the end of the stream returns
    /// the remaining bytes without a delimiter, then "". Throws limit_overrun_error when no delimiter arrives within
    /// limit() bytes, std::system_error, cancelled_error; the unconsumed bytes stay in the stream in every case.
    [[nodiscard]] read_until_awaitable read_until(std::string delim) {
        return read_until_awaitable(*this, std::move(delim));
    }
    /// read_until() with a one-character delimiter.
    [[nodiscard]] read_until_awaitable read_until(char delim) { return read_until(std::string(1, delim)); }

    // ---- writing -----------------------------------------------------------------------------------------------

    /// The awaitable of write() and write_all(): co_await yields the bytes sent.
    class [[nodiscard]] write_awaitable : public detail::io_op<write_awaitable> {
    public:
        /// Made by write() (`all` false) or write_all() (`all` true); a copy (before it is awaited) is a fresh write.
        write_awaitable(stream& s, std::span<const std::byte> buf, bool all) noexcept : s_(&s), buf_(buf), all_(all) {}
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            return suspend(this, s_->writing_, s_->write_op_, h);
        }
        bool await_ready() {
            s_->begin_op(s_->writing_, "write");
            if (!buf_.empty()) return false;
            s_->writing_ = false;
            return true;
        }
        /// For task dumps: "write on fd 7 (peer 10.0.0.2:5432)".
        void describe_wait(std::string& out) const { s_->describe_io("write", out); }
        /// Fills the SQE: a send with MSG_NOSIGNAL (on a pipe, a write) of what is not sent yet. Called by the loop.
        void prep(io_uring_sqe* sqe) noexcept { s_->prep_out(sqe, buf_.data() + done_, buf_.size() - done_); }
        /// Handles a completion: write() is over after one send; write_all() sends the rest after a short send,
        /// until all is sent, an error, or close() between two pieces.
        bool step(int res) noexcept {
            if (res < 0) {
                err_ = -res;
                return true;
            }
            done_ += static_cast<std::size_t>(res);
            if (!all_ || done_ == buf_.size()) return true;
            if (s_->fd_ < 0) {
                // close() cancelled this write while a piece of it was completing: stop with what was sent, as the
                // cancel meant, rather than send again on a closed descriptor (EBADF; seen on Linux 6.1).
                err_ = ECANCELED;
                return true;
            }
            return false; // a short write is normal: send the rest (E-1)
        }
        /// Bytes written (write_all: all of them).
        std::size_t await_resume() {
            s_->writing_ = false;
            s_->write_op_ = nullptr;
            if (cancelled()) throw cancelled_error();
            if (err_) throw s_->out_error(err_);
            return done_;
        }

    private:
        stream* s_;
        std::span<const std::byte> buf_;
        std::size_t done_ = 0;
        int err_ = 0;
        bool all_;
    };

    /// Sends what the kernel takes of `buf` now (at least one byte, unless buf is empty) and returns how much.
    /// Never raises SIGPIPE: a closed peer is a std::system_error (EPIPE, ECONNRESET) naming it.
    [[nodiscard]] write_awaitable write(std::span<const std::byte> buf) noexcept {
        return write_awaitable(*this, buf, false);
    }
    /// write() of a string's characters (not copied: they must stay alive until the write completes).
    [[nodiscard]] write_awaitable write(std::string_view s) noexcept { return write(std::as_bytes(std::span(s))); }
    /// Sends all of `buf` (asyncio's write + drain), in as many sends as the kernel needs.
    [[nodiscard]] write_awaitable write_all(std::span<const std::byte> buf) noexcept {
        return write_awaitable(*this, buf, true);
    }
    /// write_all() of a string's characters (not copied: they must stay alive until the write completes).
    [[nodiscard]] write_awaitable write_all(std::string_view s) noexcept {
        return write_all(std::as_bytes(std::span(s)));
    }

    // ---- closing -----------------------------------------------------------------------------------------------

    /// The awaitable of shutdown() and close(): co_await yields nothing once it is done.
    class [[nodiscard]] end_awaitable : public detail::io_op<end_awaitable> {
    public:
        /// Made by shutdown() (shutdown(2) with `how`) and close() (`close` true; a pipe's shutdown closes too).
        end_awaitable(stream& s, int how, bool close) noexcept : s_(&s), how_(how), close_(close) {}
        ~end_awaitable() {
            if (fd_ >= 0) detail::close_fd(fd_); // a close that never reached the kernel (cancelled before it began)
        }
        bool await_ready() {
            event_loop& loop = event_loop::current();
            if (!close_) {
                if (s_->fd_ < 0) throw std::logic_error("coring: shutdown of a closed stream");
                if (loop.supports(IORING_OP_SHUTDOWN)) return false;
                if (::shutdown(s_->fd_, how_) != 0) err_ = errno; // before Linux 5.11
                return true;
            }
            if (s_->fd_ < 0) return true; // closing twice is harmless
            // Operations other tasks still have in flight on this socket end now (closing a descriptor does not
            // cancel them, pitfalls B-7); they see ECANCELED.
            if (s_->read_op_) loop.cancel(s_->read_op_);
            if (s_->write_op_) loop.cancel(s_->write_op_);
            s_->release_rx();
            fd_ = std::exchange(s_->fd_, -1);
            if (loop.supports(IORING_OP_CLOSE)) return false;
            detail::close_fd(std::exchange(fd_, -1)); // before Linux 5.6, and on epoll
            return true;
        }
        /// Fills the SQE: IORING_OP_CLOSE, which takes over the descriptor, or IORING_OP_SHUTDOWN. Called by the loop.
        void prep(io_uring_sqe* sqe) noexcept {
            if (close_) io_uring_prep_close(sqe, std::exchange(fd_, -1)); // the kernel owns it from here
            else io_uring_prep_shutdown(sqe, s_->fd_, how_);
        }
        /// Handles the completion: keeps the error, which fails a shutdown; a close releases the descriptor whatever
        /// it reports.
        bool step(int res) noexcept {
            if (res < 0) err_ = -res;
            return true;
        }
        void await_resume() {
            if (cancelled() && !close_) throw cancelled_error();
            // A close releases the descriptor whatever it reports (no retrying a close).
            if (err_ && !close_) throw detail::net_error(err_, "shutdown", s_->peer_);
        }

    private:
        stream* s_;
        int how_;
        int fd_ = -1; // the descriptor being closed, until the SQE takes it
        int err_ = 0;
        bool close_;
    };

    /// Half-closes the stream (asyncio's write_eof): with the default SHUT_WR the peer reads the end of the stream
    /// and can still send, and this side can still read. IORING_OP_SHUTDOWN.
    [[nodiscard]] end_awaitable shutdown(int how = SHUT_WR) noexcept { return end_awaitable(*this, how, pipe_); }
    /// Closes the socket (IORING_OP_CLOSE). Reads and writes other tasks still wait for end with std::system_error
    /// (ECANCELED). Closing twice is harmless.
    [[nodiscard]] end_awaitable close() noexcept { return end_awaitable(*this, 0, true); }

    // ---- properties --------------------------------------------------------------------------------------------

    /// The remote address (kept from accept/connect, so it is known even after the peer reset the connection).
    [[nodiscard]] const address& peer_address() const noexcept { return peer_; }
    /// The local address (getsockname).
    [[nodiscard]] address local_address() const { return detail::sock_name(fd_, false); }
    /// Whether the stream holds a socket (not closed).
    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    /// The socket descriptor (for options coring does not wrap); -1 once closed.
    [[nodiscard]] int native_handle() const noexcept { return fd_; }
    /// Bytes received but not read yet (in the read-ahead buffer).
    [[nodiscard]] std::size_t buffered() const noexcept { return end_ - begin_; }
    /// Whether the standing multishot receive has already seen the peer's end of the stream or a socket error (a
    /// read reports it once the buffered bytes are taken). Always false without a multishot receive: plain reads learn
    /// of the end only when one returns 0. With buffered(), it tells whether an idle connection has something
    /// pending that a peek at the socket can no longer see (the HTTP client's pool asks).
    [[nodiscard]] bool receive_ended() const noexcept { return rx_ && (rx_->eof() || rx_->error() != 0); }
    /// Switches reading to a multishot receive that stays armed between reads (see the class comment), when the
    /// kernel has it (Linux 6.0 with provided-buffer rings) and loop_options::multishot_receive allows; otherwise
    /// nothing changes. Call on the loop's thread, between reads. Bytes arriving while nobody reads are kept in the
    /// read-ahead buffer, up to limit() (then the receive pauses until a read).
    void enable_multishot() noexcept {
        if (!reading_ && !pipe_) make_receiver();
    }
    /// Whether reads go through a multishot receive.
    [[nodiscard]] bool multishot() const noexcept { return rx_ != nullptr; }
    /// The read-ahead limit: the longest line read_until() accepts.
    [[nodiscard]] std::size_t limit() const noexcept { return limit_; }
    /// Sets limit(); throws std::invalid_argument for 0. Bytes already buffered stay.
    void set_limit(std::size_t bytes) {
        if (bytes == 0) throw std::invalid_argument("coring: stream limit must be at least 1 byte");
        limit_ = bytes;
    }

protected:
    /// For task dumps: "read on fd 7 (peer 10.0.0.2:5432)"; the peer is asked for at dump time.
    void describe_io(const char* what, std::string& out) const {
        out = detail::str_cat(what, " on fd ", std::to_string(fd_));
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        if (fd_ < 0 || ::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
        if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return; // a Unix peer has no name worth showing
        out += " (peer ";
        out += address(reinterpret_cast<const sockaddr*>(&ss), len).to_string();
        out += ')';
    }

    int fd_ = -1;  ///< the socket or pipe end; -1 when there is none (closed, moved from)
    address peer_; ///< the remote address given at construction, for peer_address() and error messages

private:
    /// await_suspend of the read and write awaitables: submits, and records the operation for close() to cancel.
    template <class Op, class P>
    static bool suspend(Op* op, bool& busy, detail::op_base*& slot, std::coroutine_handle<P> h) {
        try {
            if (!op->detail::template io_op<Op>::await_suspend(h)) return false;
        } catch (...) {
            busy = false;
            throw;
        }
        slot = op;
        return true;
    }

    void begin_op(bool& busy, const char* what) {
        if (fd_ < 0) throw std::logic_error(std::string("coring: ") + what + " on a closed stream");
        if constexpr (detail::checks) {
            // Bound by the first read or write, not at construction: a stream nobody used yet may still move.
            detail::loop_core* here = detail::current_core;
            if (!owner_) owner_ = here;
            else if (here != owner_)
                detail::throw_sharing_violation(std::string(what) + " on a stream that belongs to another event loop");
        }
        if (busy) throw std::logic_error(std::string("coring: two concurrent ") + what + "s on one stream");
        busy = true;
    }
    void check_idle(const char* what) const noexcept {
        if (!reading_ && !writing_) return;
        std::fprintf(stderr, "coring: fatal: a stream was %s while a read or write on it was in flight\n", what);
        std::abort();
    }
    void close_now() noexcept {
        release_rx();
        if (fd_ >= 0) detail::close_fd(fd_);
        fd_ = -1;
    }

    friend class detail::receiver;
    friend struct detail::rx_waiter;

    void make_receiver() noexcept {
        if (rx_ || fd_ < 0) return;
        event_loop* loop = event_loop::try_current();
        if (!loop) return;
        detail::provided_buffers* bufs = loop->receive_buffers();
        if (!bufs) return;
        rx_ = new (std::nothrow) detail::receiver(this, *loop, *bufs);
    }
    // A read or write takes an unsigned length; a longer transfer goes in pieces (the callers loop).
    static unsigned pipe_len(std::size_t len) noexcept {
        return static_cast<unsigned>(std::min<std::size_t>(len, std::size_t{1} << 30));
    }
    // Reads and writes: socket receives and sends, or on a pipe plain reads and writes at the current position.
    void prep_in(io_uring_sqe* sqe, void* buf, std::size_t len) noexcept {
        if (pipe_) io_uring_prep_read(sqe, fd_, buf, pipe_len(len), static_cast<__u64>(-1));
        else io_uring_prep_recv(sqe, fd_, buf, len, 0);
    }
    void prep_out(io_uring_sqe* sqe, const void* buf, std::size_t len) noexcept {
        if (pipe_) io_uring_prep_write(sqe, fd_, buf, pipe_len(len), static_cast<__u64>(-1));
        else io_uring_prep_send(sqe, fd_, buf, len, MSG_NOSIGNAL);
    }
    [[nodiscard]] std::system_error in_error(int err) const {
        return pipe_ ? detail::net_error(err, "read from a pipe", peer_) : detail::net_error(err, "recv from", peer_);
    }
    [[nodiscard]] std::system_error out_error(int err) const {
        if (!pipe_) return detail::net_error(err, "send to", peer_);
        if (err == EPIPE) detail::drain_sigpipe();
        return detail::net_error(err, "write to a pipe", peer_);
    }

    /// Whether this read goes through the receiver (one whose loop has gone is dropped: plain receives from then on).
    bool use_rx() noexcept {
        if (pipe_) return false;
        if (!rx_ && !auto_checked_) {
            auto_checked_ = true;
            if (event_loop* loop = event_loop::try_current(); loop && loop->options().multishot_streams)
                make_receiver();
        }
        if (!rx_) return false;
        if (rx_->loop_ptr()) return true;
        release_rx();
        return false;
    }
    void release_rx() noexcept {
        if (rx_) std::exchange(rx_, nullptr)->release();
    }
    template <class A, class P>
    bool rx_wait(detail::rx_waiter& w, A* awaitable, bool (*ready)(void*) noexcept, std::coroutine_handle<P> h) {
        w.awaitable = awaitable;
        w.ready = ready;
        return rx_->wait(w, h); // not suspended: await_resume runs next and reports
    }
    /// For a read the buffer could not satisfy: true when the receive has ended it (the end: `err` stays 0; an
    /// error: `err` is set).
    bool rx_over(int& err) noexcept {
        if (!rx_) {
            err = ECANCELED; // the stream was closed under the read
            return true;
        }
        if (rx_->error()) {
            // Reported once, as a plain receive would: Linux hands a socket error (a reset) to one recv, and the
            // socket reads as ended afterwards.
            err = rx_->take_error();
            return true;
        }
        return rx_->eof();
    }
    /// Appends received bytes to the read-ahead buffer, growing it past limit() if it must (bytes are never
    /// dropped). False when out of memory.
    bool append_received(const char* p, std::size_t n) noexcept {
        if (cap_ - end_ < n && begin_ > 0) {
            if (buffered()) std::memmove(buf_.get(), buf_.get() + begin_, buffered());
            end_ -= begin_;
            begin_ = 0;
        }
        if (cap_ - end_ < n) {
            const std::size_t want = std::max({cap_ * 2, end_ + n, std::size_t(2048)});
            auto grown = std::unique_ptr<char[]>(new (std::nothrow) char[want]);
            if (!grown) return false;
            if (end_) std::memcpy(grown.get(), buf_.get(), end_);
            buf_ = std::move(grown);
            cap_ = want;
        }
        std::memcpy(buf_.get() + end_, p, n);
        end_ += n;
        return true;
    }

    /// Moves buffered bytes into `out`; returns how many.
    std::size_t take(std::span<std::byte> out) noexcept {
        const std::size_t n = std::min(out.size(), buffered());
        if (n) std::memcpy(out.data(), buf_.get() + begin_, n);
        begin_ += n;
        if (begin_ == end_) begin_ = end_ = 0;
        return n;
    }
    /// Puts bytes a cancelled or failed read_exact already had back in front of the buffer (which is empty then:
    /// read_exact took all of it first).
    void unread(std::span<const std::byte> bytes) noexcept {
        if (bytes.empty()) return;
        if (cap_ < bytes.size() + buffered()) {
            // Out of memory here terminates (noexcept): dropping bytes silently would be worse.
            auto grown = std::unique_ptr<char[]>(new char[bytes.size() + buffered()]);
            if (buffered()) std::memcpy(grown.get() + bytes.size(), buf_.get() + begin_, buffered());
            end_ = bytes.size() + buffered();
            begin_ = 0;
            buf_ = std::move(grown);
            cap_ = end_;
        } else {
            if (buffered()) std::memmove(buf_.get() + bytes.size(), buf_.get() + begin_, buffered());
            end_ = bytes.size() + buffered();
            begin_ = 0;
        }
        std::memcpy(buf_.get(), bytes.data(), bytes.size());
    }
    /// Makes room after end_ for another recv: compacts, or grows up to the limit. False when out of memory.
    bool make_room() noexcept {
        if (begin_ > 0 && (end_ == cap_ || begin_ >= cap_ / 2)) {
            std::memmove(buf_.get(), buf_.get() + begin_, buffered());
            end_ -= begin_;
            begin_ = 0;
        }
        if (end_ < cap_) return true;
        const std::size_t want = std::min(limit_, std::max<std::size_t>(cap_ * 2, 16 * 1024));
        if (want <= cap_) return end_ < cap_;
        auto grown = std::unique_ptr<char[]>(new (std::nothrow) char[want]);
        if (!grown) return false;
        if (buffered()) std::memcpy(grown.get(), buf_.get() + begin_, buffered());
        end_ = buffered();
        begin_ = 0;
        buf_ = std::move(grown);
        cap_ = want;
        return true;
    }

    std::unique_ptr<char[]> buf_; // the read-ahead buffer, allocated by the first read_until / unread
    std::size_t cap_ = 0;         // its size
    std::size_t begin_ = 0;       // unread bytes are [begin_, end_)
    std::size_t end_ = 0;
    std::size_t limit_ = default_limit;
    detail::receiver* rx_ = nullptr;      // the multishot receive, when enabled (owned)
    detail::op_base* read_op_ = nullptr;  // the read in flight, for close() to cancel
    detail::op_base* write_op_ = nullptr; // the write in flight
    bool reading_ = false;
    bool writing_ = false;
    bool auto_checked_ = false;          // loop_options::multishot_streams was looked at
    bool pipe_ = false;                  // a pipe: read/write, not recv/send (from_pipe)
    detail::loop_core* owner_ = nullptr; // the loop of its first read or write (CORING_CHECKS)
};

// ---- the multishot receiver's steps that reach into the stream (net/detail/receiver.hpp) ------------------------

/// @cond
namespace detail {

inline void receiver::arm() noexcept {
    if (in_kernel() || current_state() == state::queued || eof_ || err_ || !owner_ || !loop) return;
    multishot_ = bufs_->multishot();
    fd_ = owner_->fd_;
    loop_ptr()->start(this);
}

inline void receiver::complete(op_base* op, int res, unsigned flags) noexcept {
    auto* r = static_cast<receiver*>(op);
    const bool final = !(flags & IORING_CQE_F_MORE);
    if (flags & IORING_CQE_F_BUFFER) {
        const unsigned id = flags >> IORING_CQE_BUFFER_SHIFT;
        if (res > 0 && r->owner_) {
            r->delivered_ = true;
            const char* p = r->bufs_->data(id);
            auto n = static_cast<std::size_t>(res);
            rx_waiter* w = r->waiter_;
            if (w && !w->direct.empty() && r->owner_->buffered() == 0) {
                // A read() is waiting with nothing buffered: straight into its buffer.
                const std::size_t k = std::min(n, w->direct.size());
                std::memcpy(w->direct.data(), p, k);
                w->direct_got = k;
                w->direct = {};
                p += k;
                n -= k;
            }
            if (n && !r->owner_->append_received(p, n)) r->err_ = ENOMEM;
        }
        r->bufs_->recycle(id);
    }
    if (!r->owner_) {
        if (final) {
            r->loop_ptr()->remove_standing(r);
            delete r;
        }
        return;
    }
    if (res == 0) {
        r->eof_ = true;
    } else if (res < 0) {
        switch (-res) {
        case ENOBUFS:   // the ring ran dry this turn (back-pressure, not an error): re-armed on demand
        case ECANCELED: // paused for back-pressure, or stopped by the loop's drain
        case EINTR:
        case EAGAIN:
            break;
        case EINVAL:
            // A kernel without IORING_RECV_MULTISHOT (5.19): plain receives from the same ring from now on.
            if (r->multishot_ && !r->delivered_) {
                r->bufs_->disable_multishot();
                break;
            }
            [[fallthrough]];
        default:
            r->err_ = -res;
        }
    }
    if (!final && r->owner_->buffered() >= r->owner_->limit_ && r->current_state() == state::submitted)
        r->loop_ptr()->cancel(r); // nobody reads: pause until somebody does
    r->notify();
    if (final && r->waiter_) r->arm(); // still waiting: the receive ended early (ENOBUFS, a full CQ, single-shot)
}

} // namespace detail
/// @endcond

} // namespace coring
