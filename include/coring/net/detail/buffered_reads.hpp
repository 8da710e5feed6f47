#pragma once

#include <coring/detail/byte_buffer.hpp>
#include <coring/net/stream.hpp>
#include <coring/task/task.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace coring::detail {

/// read(), read_exact() and read_until() over any source of bytes, written once: a stream that is not a socket of
/// its own (TLS records, a subprocess's pipe) derives from this and supplies
///
///     task<std::size_t> fill(std::span<char> into);   // at least one byte, or 0 at the end of the source
///
/// The semantics are those of coring::stream's: bytes never go missing. What a cancelled, timed-out or failed
/// read_exact() or read_until() had gathered stays in the read-ahead buffer for the next read; read_until() refuses a
/// line longer than limit() with limit_overrun_error, and read_exact() that meets the end throws
/// incomplete_read_error, both leaving the bytes in place. coring::stream keeps its own implementation, built from
/// io_uring operations without a coroutine frame per read; this one costs a frame per call, which is small next to
/// what its sources do per call (decrypting a record, a pipe read on the worker pool).
template <class Derived>
class buffered_reads {
public:
    buffered_reads() = default;
    /// Takes `o`'s read-ahead bytes; `o` is left with none (a moved-from stream reads as if nothing were buffered).
    buffered_reads(buffered_reads&& o) noexcept
        : buf_(std::move(o.buf_)), begin_(std::exchange(o.begin_, 0)), limit_(o.limit_) {}
    /// Drops this one's read-ahead bytes and takes `o`'s; `o` is left with none.
    buffered_reads& operator=(buffered_reads&& o) noexcept {
        if (this != &o) {
            buf_ = std::move(o.buf_);
            begin_ = std::exchange(o.begin_, 0);
            limit_ = o.limit_;
        }
        return *this;
    }

    /// The read-ahead limit: the longest line read_until() accepts.
    [[nodiscard]] std::size_t limit() const noexcept { return limit_; }
    void set_limit(std::size_t n) noexcept { limit_ = n == 0 ? 1 : n; }
    /// Bytes received but not read yet.
    [[nodiscard]] std::size_t buffered() const noexcept { return buf_.size() - begin_; }

    /// Reads what is available, at most buf.size() bytes; 0 at the end. Buffered bytes come first; otherwise one
    /// fill() straight into `buf`.
    task<std::size_t> read(std::span<char> buf) {
        if (buf.empty()) co_return 0;
        if (buffered() > 0) co_return take(buf);
        const std::size_t n = co_await self().fill(buf);
        co_return n;
    }
    /// read() into bytes.
    task<std::size_t> read(std::span<std::byte> buf) {
        return read(std::span<char>(reinterpret_cast<char*>(buf.data()), buf.size()));
    }

    /// Fills `buf` completely. Throws incomplete_read_error when the source ends first (the bytes stay buffered).
    task<> read_exact(std::span<char> buf) {
        while (buffered() < buf.size()) {
            const std::size_t n = co_await more(buf.size() - buffered());
            if (n == 0) throw incomplete_read_error(buf.size(), buffered());
        }
        take(buf);
    }
    /// read_exact() into bytes.
    task<> read_exact(std::span<std::byte> buf) {
        return read_exact(std::span<char>(reinterpret_cast<char*>(buf.data()), buf.size()));
    }

    /// Reads up to and including `delim`; at the end of the source the rest without it, then "". Throws
    /// limit_overrun_error when no delimiter arrives within limit() bytes (the bytes stay buffered).
    task<std::string> read_until(std::string delim) {
        if (delim.empty()) throw std::invalid_argument("coring: read_until: empty delimiter");
        std::size_t searched = 0; // bytes already searched without a match (minus a possible partial delimiter)
        for (;;) {
            const std::string_view have(buf_.data() + begin_, buffered());
            const std::size_t at = have.find(delim, searched);
            if (at != std::string_view::npos) {
                std::string line(have.substr(0, at + delim.size()));
                consume(line.size());
                co_return line;
            }
            if (buffered() >= limit_) throw limit_overrun_error(limit_);
            searched = have.size() >= delim.size() ? have.size() - delim.size() + 1 : 0;
            const std::size_t n = co_await more(limit_ - buffered());
            if (n == 0) {
                std::string rest(buf_.data() + begin_, buffered());
                consume(rest.size());
                co_return rest;
            }
        }
    }
    /// read_until() with a one-character delimiter.
    task<std::string> read_until(char delim) { return read_until(std::string(1, delim)); }

private:
    Derived& self() noexcept { return static_cast<Derived&>(*this); }

    std::size_t take(std::span<char> out) noexcept {
        const std::size_t n = std::min(out.size(), buffered());
        std::memcpy(out.data(), buf_.data() + begin_, n);
        consume(n);
        return n;
    }
    void consume(std::size_t n) noexcept {
        begin_ += n;
        if (begin_ == buf_.size()) {
            buf_.clear();
            begin_ = 0;
        }
    }
    void compact() noexcept {
        if (begin_ == 0) return;
        buf_.erase_front(begin_);
        begin_ = 0;
    }

    /// Reads once more into the buffer (at least `want` bytes of room, and a record's worth); 0 at the end.
    task<std::size_t> more(std::size_t want) {
        compact();
        // Nothing is kept unless fill() returns: a cancelled or failed fill leaves the bytes gathered so far as they
        // were.
        const std::size_t n = co_await self().fill(buf_.prepare(std::max<std::size_t>(want, 16 * 1024)));
        buf_.commit(n);
        co_return n;
    }

    byte_buffer buf_;       // read-ahead bytes: [begin_, size())
    std::size_t begin_ = 0; // first unread byte
    std::size_t limit_ = 64 * 1024;
};

} // namespace coring::detail
