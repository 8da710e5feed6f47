#pragma once

// What a stream's reads throw besides std::system_error (asyncio's IncompleteReadError and LimitOverrunError).

#include <cstddef>
#include <stdexcept>
#include <string>

namespace coring {

/// Thrown by read_exact() when the stream ends before the buffer is full (asyncio.IncompleteReadError). The bytes
/// that did arrive stay in the stream: a later read() returns them.
class incomplete_read_error : public std::runtime_error {
public:
    /// `expected` bytes were asked for and `received` arrived before the end; the message names both.
    incomplete_read_error(std::size_t expected, std::size_t received)
        : std::runtime_error("coring: read_exact: the stream ended after " + std::to_string(received) + " of " +
                             std::to_string(expected) + " bytes"),
          expected_(expected),
          received_(received) {}
    /// The size of the buffer read_exact() had to fill.
    [[nodiscard]] std::size_t expected() const noexcept { return expected_; }
    /// How many bytes arrived before the end of the stream.
    [[nodiscard]] std::size_t received() const noexcept { return received_; }

private:
    std::size_t expected_, received_;
};

/// Thrown by read_until() when no delimiter arrives within the stream's limit (asyncio.LimitOverrunError). The
/// bytes stay in the stream.
class limit_overrun_error : public std::length_error {
public:
    /// `limit` is the stream's limit() at the time; the message names it.
    explicit limit_overrun_error(std::size_t limit)
        : std::length_error("coring: read_until: no delimiter within the stream's limit of " + std::to_string(limit) +
                            " bytes") {}
};

} // namespace coring
