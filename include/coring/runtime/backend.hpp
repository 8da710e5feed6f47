#pragma once

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coring {

/// The kernel interface an event_loop runs on. Both give the same API and the same semantics; see README's
/// "Backends" for what epoll costs (no raw submit(), no multishot receives, file I/O on the worker pool).
enum class backend : unsigned char {
    automatic, ///< io_uring when it can be set up and has the operations coring needs, otherwise epoll
    io_uring,  ///< io_uring or nothing: construction throws when it cannot be set up
    epoll,     ///< readiness (epoll) with non-blocking system calls, whatever io_uring could do
};

/// "automatic", "io_uring" or "epoll".
[[nodiscard]] constexpr const char* to_string(backend b) noexcept {
    switch (b) {
    case backend::io_uring:
        return "io_uring";
    case backend::epoll:
        return "epoll";
    default:
        return "automatic";
    }
}

namespace detail {

/// The backend CORING_BACKEND names ("io_uring", "epoll", "automatic" or unset/empty: automatic). Throws
/// std::invalid_argument for anything else, so that a typo is not silently ignored.
inline backend backend_from_environment() {
    const char* v = std::getenv("CORING_BACKEND");
    if (!v || !*v) return backend::automatic;
    const std::string_view s(v);
    if (s == "io_uring" || s == "uring") return backend::io_uring;
    if (s == "epoll") return backend::epoll;
    if (s == "automatic" || s == "auto") return backend::automatic;
    throw std::invalid_argument("coring: CORING_BACKEND=" + std::string(s) +
                                " is not a backend (use io_uring, epoll or automatic)");
}

} // namespace detail
} // namespace coring
