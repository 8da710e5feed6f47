#pragma once

// Debug mode (asyncio's PYTHONASYNCIODEBUG and loop.set_debug): extra reports that cost nothing until they fire.

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace coring {

namespace detail {
/// -1 until decided: then 0 or 1. Process-wide, like the environment variable it starts from.
inline std::atomic<int> debug_state{-1};
} // namespace detail

/// Whether debug mode is on: CORING_DEBUG=1 in the environment when first asked, unless set_debug() said otherwise.
///
/// In debug mode coring also reports, on stderr:
/// - a task destroyed without ever having been awaited, spawned or handed to a combinator (asyncio's "coroutine ...
///   was never awaited"), with where its coroutine is defined (CORING_TASK_TRACE builds);
/// - every live task and what it waits for (a task dump, see dump_tasks) when run() finds its main task deadlocked.
///
/// In every mode, whether debug or not: a detached task that fails is reported with its id and spawn site, and a
/// resume that holds the loop too long with its task (loop_options::slow_callback).
inline bool debug_enabled() noexcept {
    int s = detail::debug_state.load(std::memory_order_relaxed);
    if (s < 0) {
        const char* v = std::getenv("CORING_DEBUG");
        s = v && std::strcmp(v, "1") == 0 ? 1 : 0;
        int expected = -1;
        if (!detail::debug_state.compare_exchange_strong(expected, s, std::memory_order_relaxed)) s = expected;
    }
    return s == 1;
}

/// Turns debug mode on or off for the whole process (asyncio's loop.set_debug), whatever CORING_DEBUG says.
inline void set_debug(bool on) noexcept { detail::debug_state.store(on ? 1 : 0, std::memory_order_relaxed); }

} // namespace coring
