#pragma once

#include <coring/runtime/backend.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace coring {

namespace detail {
/// Whether the environment variable `name` is "1".
inline bool env_flag(const char* name) noexcept {
    const char* v = std::getenv(name);
    return v && std::strcmp(v, "1") == 0;
}
/// Whether the environment variable `name` is "0" (a default that is on, turned off).
inline bool env_off(const char* name) noexcept {
    const char* v = std::getenv(name);
    return v && std::strcmp(v, "0") == 0;
}
} // namespace detail

/// How a loop wakes another loop of its runtime that sleeps when it posts it a message (run_on, spawn_on, channel).
enum class cross_wake : unsigned char {
    automatic, ///< msg_ring where the kernel is known to handle it well (see loop_options::wake), otherwise eventfd
    msg_ring,  ///< IORING_OP_MSG_RING from the sender's own ring (io_uring loops, Linux 5.18+), else eventfd
    eventfd,   ///< a write to the target's eventfd, which its ring or epoll has a read armed on
};

namespace detail {
/// The wake CORING_CROSS_WAKE names ("msg_ring", "eventfd", "automatic" or unset: automatic). Throws
/// std::invalid_argument for anything else, so that a typo is not silently ignored.
inline cross_wake cross_wake_from_environment() {
    const char* v = std::getenv("CORING_CROSS_WAKE");
    if (!v || !*v) return cross_wake::automatic;
    const std::string_view s(v);
    if (s == "msg_ring") return cross_wake::msg_ring;
    if (s == "eventfd") return cross_wake::eventfd;
    if (s == "automatic") return cross_wake::automatic;
    throw std::invalid_argument("coring: CORING_CROSS_WAKE=" + std::string(s) +
                                " is not a wake-up (use msg_ring, eventfd or automatic)");
}
} // namespace detail

/// How an event_loop sets up its io_uring. The defaults suit servers and tests alike; every optional kernel feature
/// is tried first and dropped, one at a time, when the running kernel refuses it.
struct loop_options {
    /// Which kernel interface to run on. automatic (the default) takes io_uring when it can be set up and falls back
    /// to epoll when it cannot (seccomp, kernel.io_uring_disabled, an old kernel), saying why once on stderr; the
    /// environment variable CORING_BACKEND=io_uring|epoll overrides automatic (not an explicit choice made here).
    coring::backend backend = coring::backend::automatic;
    /// Say once per process on stderr when a loop runs on epoll, and why. CORING_BACKEND_NOTICE=0 in the environment
    /// silences it too.
    bool backend_notice = true;

    /// Submission queue entries (rounded up to a power of two by the kernel). A full queue is flushed, never an error.
    unsigned entries = 1024;
    /// Completion queue entries; 0 means 8 x `entries`. A larger queue overflows less often under bursts.
    unsigned cq_entries = 0;

    /// Try IORING_SETUP_SINGLE_ISSUER (Linux 6.0): only the loop's thread submits, which lets the kernel skip locking.
    bool single_issuer = true;
    /// Try IORING_SETUP_DEFER_TASKRUN (Linux 6.1, needs single_issuer): completions are run only when the loop asks.
    bool defer_taskrun = true;
    /// Try IORING_SETUP_COOP_TASKRUN (Linux 5.19): no inter-processor interrupts to post completions.
    bool coop_taskrun = true;
    /// Try IORING_SETUP_SUBMIT_ALL (Linux 5.18): one failing SQE does not stop the rest of the batch.
    bool submit_all = true;
    /// Wait for the earliest timer with IORING_ENTER_EXT_ARG (Linux 5.11). When false or unsupported, the loop arms a
    /// single IORING_OP_TIMEOUT for the earliest deadline instead.
    bool wait_timeout_arg = true;
    /// Give those waits an absolute deadline (IORING_ENTER_ABS_TIMER, Linux 6.12), which spares a clock read per
    /// wait; when false or unsupported the deadline is passed relative to now.
    bool absolute_wait_deadline = true;
    /// Register the ring descriptor (Linux 5.18) so that each io_uring_enter skips the descriptor lookup.
    bool register_ring_fd = true;
    /// Whether the loop's waits count as I/O wait (the `wa` of top, iowait in /proc/stat) while operations are in
    /// flight, as io_uring's waits do by default. False (Linux 6.15+, IORING_ENTER_NO_IOWAIT) shows a loop waiting on
    /// its sockets as idle; older kernels always count it. True keeps the kernel's default, which on bare metal with
    /// the schedutil governor also raises the CPU's frequency after such a wait (the "iowait boost").
    bool count_waits_as_iowait = false;
    /// How this loop, as a sender, wakes a sleeping loop of its runtime. automatic picks msg_ring on Linux 6.2+ (where
    /// a message to a DEFER_TASKRUN ring runs as the target's task work) and eventfd before; the environment variable
    /// CORING_CROSS_WAKE=msg_ring|eventfd overrides automatic. Threads without a loop (to_thread's workers, foreign
    /// threads, a signal's stop()) and epoll loops always use the eventfd, and so does a loop's thread outside run().
    /// The MSG_RING leaves with the sender's next io_uring_enter, at the end of its turn, as the turn's I/O does: a
    /// task that blocks its loop's thread (a blocking call, a long computation) delays the wake-ups it sent until it
    /// yields; choose eventfd for a loop whose tasks do that.
    cross_wake wake = cross_wake::automatic;

    /// Let streams that ask for it (stream::enable_multishot, the HTTP server's connections) keep one multishot
    /// receive armed (Linux 6.0) on a ring of provided buffers (Linux 5.19) instead of submitting a receive per read.
    /// False makes enable_multishot() a no-op: for steering around a kernel bug.
    bool multishot_receive = true;
    /// The provided buffers those receives share (a power of two, at most 32768) and their size in bytes. A buffer
    /// goes back to the kernel as soon as its bytes are copied into the stream, so they only cover one loop turn's
    /// completions; a ring found empty costs a re-arm, never data.
    unsigned receive_buffers = 256;
    /// The size in bytes of each of those buffers.
    unsigned receive_buffer_size = 4096;
    /// Give every stream a multishot receive, as if enable_multishot() were called before its first read. Defaults to
    /// whether CORING_MULTISHOT_STREAMS=1 is in the environment (so that a test suite can run its stream tests both
    /// ways).
    bool multishot_streams = detail::env_flag("CORING_MULTISHOT_STREAMS");
    /// Listeners keep one multishot accept armed (IORING_ACCEPT_MULTISHOT, Linux 5.19; plain accepts before) from
    /// their first accept() on, instead of submitting an accept per connection: connections that arrive while the
    /// server task is busy are accepted meanwhile, and accept() returns them without suspending (up to 64 per
    /// listener; past that, the rest wait in the kernel's backlog). One loop takes every connection pending on its
    /// listener at once: for a socket shared by several processes (pre-fork, without SO_REUSEPORT) that want an even
    /// share, turn this off. Not on epoll. Defaults to on unless CORING_MULTISHOT_ACCEPT=0 is in the environment.
    bool multishot_accept = !detail::env_off("CORING_MULTISHOT_ACCEPT");

    /// Reads of buffered files (not open_mode::direct) of at most 256 KiB first try preadv2 with RWF_NOWAIT on the
    /// loop's thread when the read would be the turn's only operation: a page-cache hit then costs one system call, as
    /// pread does, instead of a trip through the ring (and on epoll, or without IORING_OP_READ, a worker thread); a
    /// miss (EAGAIN) goes the usual way, and a file that keeps missing is tried less and less often. Reads that come
    /// together (several tasks, one turn) keep going through the ring in one batch. Never blocks the loop: RWF_NOWAIT
    /// fails rather than wait for the disk. False sends every read the usual way (see loop_stats::cached_reads).
    bool cached_reads = true;

    /// IORING_OP_* opcodes to treat as unsupported, as on a kernel without them: operations that have a fallback
    /// (file operations run on the worker pool) use it. For testing those paths, or for steering around a kernel bug.
    std::vector<unsigned> unsupported_opcodes;

    /// How long a loop that has nothing to do but wait for work it handed to other threads (to_thread jobs, run_on
    /// and spawn_on calls) watches for their results before it sleeps in the kernel. A result that arrives meanwhile
    /// is taken without a wake-up through the kernel, which costs tens of microseconds on a virtual machine. A loop
    /// that also waits for I/O (a socket, a file) never spins, and a spin never runs past the earliest timer. Zero
    /// turns it off; at most 1 second. It is off by itself on a thread whose affinity allows one CPU only (as with
    /// runtime_options::pin), where spinning would keep the worker from running; a CPU quota (a container's
    /// cpu.max) is not seen, and there a loop whose jobs are short costs up to this much CPU per job.
    std::chrono::microseconds remote_spin{20};

    /// Threads of the pool that runs to_thread() jobs, started on first use; 0 means min(32, cores + 4), as asyncio.
    /// The loops of a runtime share one pool, and this bounds it as a whole.
    unsigned worker_threads = 0;

    /// How long leaving run() or destroying the loop waits for cancelled tasks and operations to finish. Whatever is
    /// still in the kernel after that is leaked on purpose (never freed under the kernel's feet), with a warning.
    std::chrono::milliseconds shutdown_timeout{10000};

    /// Called with the exception that ended a detached task (cancelled_error is not reported). Empty means the
    /// default: one line on stderr naming the exception.
    std::function<void(std::exception_ptr)> exception_handler;

    /// The stall detector (asyncio's slow_callback_duration): when one resume of a task keeps the loop's thread for
    /// longer than this (a blocking call, a long computation), the loop says so on stderr once the resume returns,
    /// naming the task (id, spawn site, where it waits now; see dump_tasks) and a lower bound of how long it took; at
    /// most one line per second, with a count of those left out (all are counted in loop_stats::stalls). A resume
    /// shorter than the threshold is never reported; the watchdog looks every quarter of it, so one longer than 1.25
    /// times it is, unless the machine keeps the watchdog's thread from running. Zero turns it off; at most 24 hours.
    /// Callbacks posted from other threads (call_soon_threadsafe, loop_handle) are not watched, call_soon's are.
    ///
    /// The loop only stores a counter per resume; a watchdog thread, one per process, started by the first loop that
    /// wants it, looks at the loops every quarter of the smallest threshold while any exists.
    std::chrono::milliseconds slow_callback{100};

    /// A signal (SIGUSR1, say) on which run() prints a task dump to stderr (coring::dump_tasks) and goes on; 0: none.
    /// run() spawns a task that waits for it with wait_signal, which blocks it in the loop's thread: block it in the
    /// process's other threads too (before starting them), or one of them may take it and die of it. That task is
    /// listed in dumps and counted by task_count(), and a main task that waits for the impossible is then reported as
    /// a deadlock no more (the signal can always come).
    int dump_on_signal = 0;
};

} // namespace coring
