#pragma once

#include <coring/config.hpp>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace coring::detail {

/// Whether the sharing-rule checks run (CORING_CHECKS).
inline constexpr bool checks = CORING_CHECKS != 0;

/// The text every sharing-rule report ends with: what to use instead.
inline constexpr const char* sharing_advice = "; only channels and run_on/spawn_on cross loops";

/// Reports a broken sharing rule where nothing may throw (a wake-up from a noexcept path, a frame finishing on the
/// wrong loop): going on would push a coroutine onto another thread's ready queue, so stop here, loudly.
[[noreturn]] inline void sharing_violation(const char* what) noexcept {
    std::fprintf(stderr, "coring: fatal: %s%s\n", what, sharing_advice);
    std::abort();
}

/// Throws the std::logic_error of a broken sharing rule.
[[noreturn]] inline void throw_sharing_violation(const std::string& what) {
    throw std::logic_error("coring: " + what + sharing_advice);
}

} // namespace coring::detail
