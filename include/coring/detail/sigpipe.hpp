#pragma once

#include <signal.h>

#include <ctime>

namespace coring::detail {

/// Whether this thread blocked SIGPIPE through block_sigpipe().
inline thread_local bool sigpipe_blocked_here = false;

/// A write to a pipe whose reader is gone raises SIGPIPE in the writing thread, and io_uring performs pipe writes in
/// the context of the thread that owns the ring (or on epoll, in it directly): with the default disposition that
/// kills the process. Sockets avoid it with MSG_NOSIGNAL; pipes have no such flag. So a loop thread that writes to a
/// child's stdin blocks SIGPIPE for itself: the write then fails with EPIPE and the signal stays pending until
/// drain_sigpipe() takes it. Nothing happens when the application ignores SIGPIPE or handles it (its choice), or
/// already blocks it. Children get a clean signal mask (process::spawn resets it).
inline void block_sigpipe() noexcept {
    if (sigpipe_blocked_here) return;
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) return;
    sigset_t set;
    ::sigemptyset(&set);
    ::sigaddset(&set, SIGPIPE);
    sigset_t old;
    if (::pthread_sigmask(SIG_BLOCK, &set, &old) != 0) return;
    sigpipe_blocked_here = ::sigismember(&old, SIGPIPE) != 1;
}

/// After a pipe write failed with EPIPE: takes the SIGPIPE it left pending on this thread (if block_sigpipe()
/// blocked it), so that it cannot fire if the application unblocks the signal later.
inline void drain_sigpipe() noexcept {
    if (!sigpipe_blocked_here) return;
    sigset_t set;
    ::sigemptyset(&set);
    ::sigaddset(&set, SIGPIPE);
    const timespec zero{0, 0};
    while (::sigtimedwait(&set, nullptr, &zero) == SIGPIPE) {}
}

} // namespace coring::detail
