#pragma once

#include <exception>

namespace coring {

/// Thrown at the suspension point of a task whose cancellation was requested (asyncio.CancelledError).
///
/// Cancellation is level-triggered: once a task's cancellation was requested, every later cancellable await in it
/// throws again, so a task that catches it cannot go on waiting by accident.
class cancelled_error : public std::exception {
public:
    /// A fixed message: "coring: the task was cancelled".
    [[nodiscard]] const char* what() const noexcept override { return "coring: the task was cancelled"; }
};

/// Thrown by timeout() and timeout_at() when the awaitable did not finish in time (asyncio.TimeoutError).
class timeout_error : public std::exception {
public:
    /// A fixed message: "coring: the operation timed out".
    [[nodiscard]] const char* what() const noexcept override { return "coring: the operation timed out"; }
};

} // namespace coring
