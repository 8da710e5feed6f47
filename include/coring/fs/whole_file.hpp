#pragma once

#include <coring/fs/detail/path_arg.hpp>
#include <coring/fs/file.hpp>
#include <coring/task/gather.hpp>
#include <coring/task/task.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace coring {

namespace detail {

/// Whole-file helpers move a large file in pieces of this size...
inline constexpr std::size_t whole_file_chunk = std::size_t{1} << 20;
/// ...with up to this many pieces in flight (enough to keep a fast SSD's queue busy; a cached file gains little more).
inline constexpr std::size_t whole_file_depth = 8;

/// Fills `dst` from `offset` on; fewer bytes only where the file ends.
inline task<std::size_t> read_fully_at(file& f, std::span<std::byte> dst, std::uint64_t offset) {
    std::size_t got = 0;
    while (got < dst.size()) {
        const std::size_t n = co_await f.read_at(dst.subspan(got), offset + got);
        if (n == 0) break;
        got += n;
    }
    co_return got;
}

/// One of the readers of read_file: takes the next piece until none is left; notes the earliest end of file seen.
inline task<> read_pieces(file& f, std::span<std::byte> all, std::size_t& next, std::uint64_t& eof) {
    while (next < all.size()) {
        const std::size_t off = next;
        const std::size_t len = std::min(whole_file_chunk, all.size() - off);
        next += len;
        const std::size_t got = co_await read_fully_at(f, all.subspan(off, len), off);
        if (got < len) eof = std::min<std::uint64_t>(eof, off + got);
    }
}

/// One of the writers of write_file.
inline task<> write_pieces(file& f, std::span<const std::byte> all, std::size_t& next) {
    while (next < all.size()) {
        const std::size_t off = next;
        const std::size_t len = std::min(whole_file_chunk, all.size() - off);
        next += len;
        co_await f.write_all_at(all.subspan(off, len), off);
    }
}

/// read_file's coroutine: owns its copy of the path for as long as it runs.
inline task<std::string> read_file_at(std::string path) {
    file f = co_await file::open(path, open_mode::read);
    const std::uint64_t size = co_await f.size();
    std::string out;
    std::uint64_t valid = 0;
    if (size > 0) {
        out.resize(static_cast<std::size_t>(size));
        const auto all = std::as_writable_bytes(std::span(out));
        if (size <= detail::whole_file_chunk) {
            valid = co_await detail::read_fully_at(f, all, 0);
        } else {
            std::size_t next = 0;
            std::uint64_t eof = size;
            std::vector<task<>> readers;
            for (std::size_t i = 0; i < detail::whole_file_depth && i * detail::whole_file_chunk < size; ++i)
                readers.push_back(detail::read_pieces(f, all, next, eof));
            co_await gather(std::move(readers));
            valid = eof;
        }
        out.resize(static_cast<std::size_t>(valid));
    }
    if (valid == size) {
        // Grown since statx, or of a size statx does not know: read on until a read returns 0.
        std::size_t step = 64 * 1024;
        for (;;) {
            const std::size_t old = out.size();
            out.resize(old + step);
            const std::size_t n = co_await f.read_at(std::span(out).subspan(old), old);
            out.resize(old + n);
            if (n == 0) break;
            step = std::min(step * 2, detail::whole_file_chunk);
        }
    }
    if (size > 0) {
        // A read that races a truncation can return the zeros the kernel writes over the cut-off end of the last
        // page as file content, with no short read to tell. The file only had those bytes while it was longer than
        // it is now: what lies past its size after the last read was never its content at any one time.
        const std::uint64_t now = co_await f.size();
        if (out.size() > now) out.resize(static_cast<std::size_t>(now));
    }
    co_await f.close();
    co_return out;
}

/// write_file's coroutine: owns its copy of the path for as long as it runs.
inline task<> write_file_at(std::string path, std::span<const std::byte> data) {
    file f = co_await file::open(path, open_mode::write | open_mode::create | open_mode::truncate);
    if (data.size() <= detail::whole_file_chunk) {
        co_await f.write_all_at(data, 0);
    } else {
        std::size_t next = 0;
        std::vector<task<>> writers;
        for (std::size_t i = 0; i < detail::whole_file_depth && i * detail::whole_file_chunk < data.size(); ++i)
            writers.push_back(detail::write_pieces(f, data, next));
        co_await gather(std::move(writers));
    }
    co_await f.close();
}

} // namespace detail

/// The whole content of the file at `path` (Path.read_bytes). The buffer is sized from statx and a large file is
/// read with several reads in flight; a file that grows meanwhile is read to its new end, one that shrinks gives
/// what is left, and files whose size is unknown in advance (/proc, pipes) are read until their end. Throws
/// std::system_error naming the path, cancelled_error. `path` is a std::filesystem::path, std::string,
/// std::string_view or const char*; the task keeps a copy.
[[nodiscard]] inline task<std::string> read_file(detail::path_arg path) { return detail::read_file_at(path.str()); }

/// Replaces the content of the file at `path` with `data`, creating it (permissions 0666 less the umask) when
/// missing (Path.write_bytes); a large buffer goes out with several writes in flight. `data` must stay valid until
/// the task finishes (awaiting the call directly guarantees it). Does not fsync: open a file and sync() it for that.
/// Throws std::system_error naming the path, cancelled_error. `path` as for read_file().
[[nodiscard]] inline task<> write_file(detail::path_arg path, std::span<const std::byte> data) {
    return detail::write_file_at(path.str(), data);
}

/// write_file of chars.
[[nodiscard]] inline task<> write_file(detail::path_arg path, std::string_view data) {
    return detail::write_file_at(path.str(), std::as_bytes(std::span(data)));
}

} // namespace coring
