#pragma once

namespace coring::detail {

/// The kernel's "restart the system call" codes (include/linux/errno.h). A system call never returns them: the
/// kernel restarts the call or turns them into EINTR. An io_uring operation that an io-wq worker thread was running
/// when it was interrupted (its cancellation) can complete with one, though: an openat gives -ERESTARTSYS (512) on
/// Linux 6.18, which, unlike reads, writes, accept and connect, does not translate it.
inline constexpr int erestartsys = 512;
inline constexpr int erestartnointr = 513;
inline constexpr int erestartnohand = 514;
inline constexpr int erestart_restartblock = 516;

/// Whether `res`, a CQE's result, is one of the restart codes (negated).
[[nodiscard]] constexpr bool is_restart_result(int res) noexcept {
    return res == -erestartsys || res == -erestartnointr || res == -erestartnohand || res == -erestart_restartblock;
}

} // namespace coring::detail
