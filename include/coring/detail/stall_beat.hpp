#pragma once

// The loop's side of the stall detector (loop_options::slow_callback); the watchdog is in detail/stall_watch.hpp.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace coring::detail {

/// What a loop shares with the watchdog. Written by the loop: `beat`; by the watchdog: the rest.
struct stall_beat {
    /// Odd while the loop is inside a resume, even between turns' resumes; a different odd value for each resume.
    std::atomic<std::uint64_t> beat{0};
    /// The beat the watchdog found unchanged for longer than `threshold` (0: none), and when it first saw it
    /// (steady_clock, nanoseconds since its epoch), published by `flagged`'s release store.
    std::atomic<std::uint64_t> flagged{0};
    std::atomic<std::int64_t> since{0};
    std::chrono::nanoseconds threshold{0};
    // The watchdog's own notes: the beat it saw last and when it first saw it.
    std::uint64_t seen = 0;
    std::chrono::steady_clock::time_point seen_at{};
};

} // namespace coring::detail
