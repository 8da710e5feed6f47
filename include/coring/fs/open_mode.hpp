#pragma once

#include <fcntl.h>

#include <stdexcept>

namespace coring {

/// How file::open opens a file; the flags combine with `|` (open_mode::write | open_mode::create).
enum class open_mode : unsigned {
    read = 1u << 0,      ///< reading allowed
    write = 1u << 1,     ///< writing allowed
    create = 1u << 2,    ///< create the file when it does not exist (O_CREAT)
    truncate = 1u << 3,  ///< empty an existing file (O_TRUNC); needs write
    append = 1u << 4,    ///< every write goes to the end (O_APPEND); implies write
    exclusive = 1u << 5, ///< fail with EEXIST when the file exists (O_EXCL); needs create
    direct = 1u << 6,    ///< bypass the page cache (O_DIRECT): buffers, offsets and lengths must be aligned
};

/// Both sets of flags.
constexpr open_mode operator|(open_mode a, open_mode b) noexcept {
    return static_cast<open_mode>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
/// The flags in both.
constexpr open_mode operator&(open_mode a, open_mode b) noexcept {
    return static_cast<open_mode>(static_cast<unsigned>(a) & static_cast<unsigned>(b));
}
/// Whether `mode` has every flag of `flags`.
constexpr bool has(open_mode mode, open_mode flags) noexcept { return (mode & flags) == flags; }

namespace detail {

/// The open(2) flags for a mode (always close-on-exec); std::invalid_argument for a combination that means nothing.
inline int open_flags(open_mode m) {
    if (static_cast<unsigned>(m) >= (1u << 7)) throw std::invalid_argument("coring: open: unknown open_mode flags");
    const bool r = has(m, open_mode::read);
    const bool w = has(m, open_mode::write) || has(m, open_mode::append);
    if (!r && !w) throw std::invalid_argument("coring: open: the mode needs read, write or append");
    if (has(m, open_mode::truncate) && !w) throw std::invalid_argument("coring: open: open_mode::truncate needs write");
    if (has(m, open_mode::exclusive) && !has(m, open_mode::create))
        throw std::invalid_argument("coring: open: open_mode::exclusive needs create");
    int f = O_CLOEXEC | (r && w ? O_RDWR : w ? O_WRONLY : O_RDONLY);
    if (has(m, open_mode::create)) f |= O_CREAT;
    if (has(m, open_mode::truncate)) f |= O_TRUNC;
    if (has(m, open_mode::append)) f |= O_APPEND;
    if (has(m, open_mode::exclusive)) f |= O_EXCL;
    if (has(m, open_mode::direct)) f |= O_DIRECT;
    return f;
}

} // namespace detail
} // namespace coring
