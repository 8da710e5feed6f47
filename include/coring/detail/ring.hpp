#pragma once

#include <coring/detail/str_cat.hpp>
#include <coring/runtime/loop_options.hpp>

#include <liburing.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <bitset>
#include <cerrno>
#include <cstdio>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>

namespace coring::detail {

/// Reads an integer sysctl under /proc/sys; -1 when it does not exist.
inline int read_sysctl_int(const char* path) noexcept {
    std::FILE* f = std::fopen(path, "re");
    if (!f) return -1;
    int v = -1;
    if (std::fscanf(f, "%d", &v) != 1) v = -1;
    std::fclose(f);
    return v;
}

/// What the process knows about why io_uring_setup failed, gathered once so that the message can be tested.
struct setup_environment {
    int io_uring_disabled = -1; // kernel.io_uring_disabled, -1 when the kernel has no such sysctl (before 6.6)
    int io_uring_group = -1;    // kernel.io_uring_group
    long long memlock_kib = -1; // RLIMIT_MEMLOCK soft limit in KiB, -1 for unlimited or unknown

    static setup_environment read() noexcept {
        setup_environment e;
        e.io_uring_disabled = read_sysctl_int("/proc/sys/kernel/io_uring_disabled");
        e.io_uring_group = read_sysctl_int("/proc/sys/kernel/io_uring_group");
        rlimit rl{};
        if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            e.memlock_kib = static_cast<long long>(rl.rlim_cur / 1024);
        return e;
    }
};

/// Says why io_uring_setup failed with `err` (a positive errno), in words a user can act on.
inline std::string setup_failure_reason(int err, const setup_environment& env, unsigned entries) {
    using std::to_string;
    switch (err) {
    case EPERM:
        if (env.io_uring_disabled == 2)
            return "io_uring is disabled on this system: the sysctl kernel.io_uring_disabled is 2, which refuses it "
                   "to every process (allow it with `sysctl -w kernel.io_uring_disabled=0`)";
        if (env.io_uring_disabled == 1)
            return "io_uring is restricted on this system: the sysctl kernel.io_uring_disabled is 1, which allows it "
                   "only to processes with CAP_SYS_ADMIN or in the group kernel.io_uring_group (" +
                   to_string(env.io_uring_group) +
                   "); add the user to that group or allow it with `sysctl -w kernel.io_uring_disabled=0`";
        return std::string("io_uring_setup was refused although ") +
               (env.io_uring_disabled == 0 ? "the sysctl kernel.io_uring_disabled is 0"
                                           : "this kernel has no kernel.io_uring_disabled sysctl") +
               ": a seccomp filter (such as Docker's default profile, which blocks io_uring) or a security module "
               "denies it; run with a seccomp profile that allows io_uring_setup, io_uring_enter and "
               "io_uring_register";
    case ENOSYS:
        return "this kernel does not provide io_uring (io_uring_setup is not implemented): coring needs Linux 5.10 "
               "or newer built with CONFIG_IO_URING, and some sandboxes hide io_uring on purpose";
    case ENOMEM:
        return "the kernel could not allocate the ring: before Linux 5.12 ring memory is charged to the locked-memory "
               "limit, which is " +
               (env.memlock_kib < 0 ? std::string("unlimited") : to_string(env.memlock_kib) + " KiB") +
               " here; raise it (`ulimit -l`, LimitMEMLOCK=) or use a smaller ring (loop_options::entries = " +
               to_string(entries) + ")";
    case EMFILE:
    case ENFILE:
        return "no file descriptor is left for the ring";
    case EINVAL:
        return "the kernel rejected the ring parameters even without optional features (entries = " +
               to_string(entries) + ")";
    default:
        return "io_uring_setup failed";
    }
}

/// Whether the running kernel is older than `major`.`minor` (false when uname cannot tell).
inline bool kernel_older_than(int major, int minor) noexcept {
    utsname u{};
    if (::uname(&u) != 0) return false;
    int ma = 0, mi = 0;
    if (std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
    return ma < major || (ma == major && mi < minor);
}

/// Whether io_uring_setup's error `err` means "io_uring is not available here" (then an automatic loop runs on
/// epoll), as opposed to a passing shortage (out of descriptors) that a fallback would only hide.
inline bool io_uring_refused(int err) noexcept {
    switch (err) {
    case EPERM:      // seccomp (Docker's default profile), kernel.io_uring_disabled, a security module
    case EACCES:     // the same from some security modules
    case ENOSYS:     // no io_uring in this kernel, or hidden by a sandbox
    case EOPNOTSUPP: // the same from gVisor-like sandboxes
        return true;
    case ENOMEM: // before 5.12 the ring is charged to RLIMIT_MEMLOCK, which is often too small for it
        return kernel_older_than(5, 12);
    default:
        return false;
    }
}

/// The message of the std::system_error thrown when no ring can be set up.
inline std::string setup_failure_message(int err, const setup_environment& env, unsigned entries) {
    return str_cat("coring: cannot create an event loop: ", setup_failure_reason(err, env, entries));
}

/// One io_uring: set up with the best flags the kernel accepts, probed once, entered with raw syscalls so that every
/// error is seen as -errno (A-7 in the pitfalls: no errno/return-value mix-ups).
class ring {
public:
    explicit ring(const loop_options& o) {
        if (o.entries == 0) throw std::invalid_argument("coring: loop_options::entries must be at least 1");
        const unsigned cq =
            o.cq_entries ? std::max(o.cq_entries, o.entries) : (o.entries > (1u << 28) ? o.entries : o.entries * 8);
        // Optional flags, newest first: on EINVAL the first one still set is dropped and setup retried.
        const unsigned optional[] = {
            o.defer_taskrun && o.single_issuer ? IORING_SETUP_DEFER_TASKRUN : 0u,
            o.single_issuer ? IORING_SETUP_SINGLE_ISSUER : 0u,
            o.coop_taskrun ? IORING_SETUP_COOP_TASKRUN : 0u,
            o.submit_all ? IORING_SETUP_SUBMIT_ALL : 0u,
            IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP,
        };
        unsigned flags = 0;
        for (unsigned f : optional) flags |= f;
        for (unsigned i = 0;;) {
            io_uring_params p{};
            p.flags = flags;
            p.cq_entries = cq;
            const int r = io_uring_queue_init_params(o.entries, &ring_, &p);
            if (r == 0) {
                features_ = p.features;
                break;
            }
            while (r == -EINVAL && i < std::size(optional) && !(flags & optional[i])) ++i;
            if (r == -EINVAL && i < std::size(optional)) {
                flags &= ~optional[i++];
                continue;
            }
            throw std::system_error(-r, std::system_category(),
                                    setup_failure_message(-r, setup_environment::read(), o.entries));
        }
        setup_flags_ = flags;
        // A forked child that touched the parent's ring would corrupt it; without the mapping it faults instead (G-2).
        (void)io_uring_ring_dontfork(&ring_);
        enter_fd_ = ring_.ring_fd;
#ifdef IORING_ENTER_REGISTERED_RING
        if (o.register_ring_fd && io_uring_register_ring_fd(&ring_) == 1) {
            enter_fd_ = ring_.enter_ring_fd;
            enter_flags_ = IORING_ENTER_REGISTERED_RING;
        }
#endif
        // A wait with operations in flight counts as I/O wait by default, so an idle server's CPU shows up as
        // "iowait" in top and in monitoring; a loop waiting on sockets is idle (Linux 6.15 lets it say so).
        if (!o.count_waits_as_iowait && (features_ & feat_no_iowait)) enter_flags_ |= enter_no_iowait;
        // Absolute wait deadlines (Linux 6.12) spare a clock read per wait; an older kernel refuses the flag.
        if (o.wait_timeout_arg && o.absolute_wait_deadline && (features_ & IORING_FEAT_EXT_ARG)) {
            const __kernel_timespec zero{0, 0};
            const int r = enter(0, 0, IORING_ENTER_GETEVENTS | enter_abs_timer, &zero);
            abs_timer_ = r >= 0 || r == -ETIME;
        }
        if (io_uring_probe* pr = io_uring_get_probe_ring(&ring_)) {
            for (unsigned op = 0; op < pr->last_op + 1u && op < probe_.size(); ++op)
                if (io_uring_opcode_supported(pr, static_cast<int>(op))) probe_.set(op);
            io_uring_free_probe(pr);
            probed_ = true;
        } else {
            // Linux 5.5 and older cannot be probed: they have the opcodes up to CONNECT (5.5) and none after.
            for (unsigned op = 0; op <= IORING_OP_CONNECT; ++op) probe_.set(op);
        }
        kernel_probe_ = probe_;
        for (unsigned op : o.unsupported_opcodes)
            if (op < probe_.size()) probe_.reset(op);
    }
    ring(const ring&) = delete;
    ring& operator=(const ring&) = delete;
    ~ring() { io_uring_queue_exit(&ring_); }

    /// IORING_ENTER_ABS_TIMER (Linux 6.12; not in liburing 2.3's headers): the EXT_ARG timeout is an absolute
    /// CLOCK_MONOTONIC time.
    static constexpr unsigned enter_abs_timer = 1U << 5;
    /// IORING_ENTER_NO_IOWAIT and IORING_FEAT_NO_IOWAIT (Linux 6.15; not in liburing 2.3's headers).
    static constexpr unsigned enter_no_iowait = 1U << 7;
    static constexpr unsigned feat_no_iowait = 1U << 17;

    [[nodiscard]] io_uring* get() noexcept { return &ring_; }
    /// The ring's own descriptor (never the registered index): what another ring's MSG_RING names.
    [[nodiscard]] int fd() const noexcept { return ring_.ring_fd; }
    /// Whether waits can take an absolute deadline (enter_abs_timer).
    [[nodiscard]] bool abs_timer() const noexcept { return abs_timer_; }
    [[nodiscard]] unsigned setup_flags() const noexcept { return setup_flags_; }
    [[nodiscard]] unsigned features() const noexcept { return features_; }
    /// Whether the kernel supports `opcode` (and loop_options::unsupported_opcodes does not exclude it).
    [[nodiscard]] bool supports(unsigned opcode) const noexcept {
        return opcode < probe_.size() && probe_.test(opcode);
    }

    /// The first opcode coring's sockets, signals and timers need that this ring lacks, as "IORING_OP_RECV (Linux
    /// 5.6)"; null when it has them all. A loop without one of them runs on epoll instead. By the kernel's probe; of
    /// loop_options::unsupported_opcodes only the socket opcodes count (nothing else can do their work), not READ
    /// and the others that the file operations' worker-pool fallback is for.
    [[nodiscard]] const char* missing_required() const noexcept {
        static constexpr struct {
            unsigned op;
            const char* name;
        } required[] = {
            {IORING_OP_TIMEOUT, "IORING_OP_TIMEOUT (Linux 5.4)"},
            {IORING_OP_ACCEPT, "IORING_OP_ACCEPT (Linux 5.5)"},
            {IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL (Linux 5.5)"},
            {IORING_OP_CONNECT, "IORING_OP_CONNECT (Linux 5.5)"},
            {IORING_OP_POLL_ADD, "IORING_OP_POLL_ADD (Linux 5.1)"},
            {IORING_OP_SENDMSG, "IORING_OP_SENDMSG (Linux 5.3)"},
            {IORING_OP_RECVMSG, "IORING_OP_RECVMSG (Linux 5.3)"},
            {IORING_OP_READ, "IORING_OP_READ (Linux 5.6)"},
            {IORING_OP_SEND, "IORING_OP_SEND (Linux 5.6)"},
            {IORING_OP_RECV, "IORING_OP_RECV (Linux 5.6)"},
        };
        for (const auto& r : required) {
            const bool socket_op = r.op == IORING_OP_ACCEPT || r.op == IORING_OP_CONNECT || r.op == IORING_OP_SEND ||
                                   r.op == IORING_OP_RECV || r.op == IORING_OP_SENDMSG || r.op == IORING_OP_RECVMSG;
            if (!kernel_probe_.test(r.op) || (socket_op && !supports(r.op))) return r.name;
        }
        return nullptr;
    }

    /// Publishes the SQEs taken since the last flush and returns how many the kernel has not consumed yet.
    unsigned flush_sq() noexcept {
        io_uring_sq& sq = ring_.sq;
        const unsigned tail = sq.sqe_tail;
        if (sq.sqe_head != tail) {
            sq.sqe_head = tail;
            __atomic_store_n(sq.ktail, tail, __ATOMIC_RELEASE);
        }
        return tail - __atomic_load_n(sq.khead, __ATOMIC_RELAXED);
    }

    /// io_uring_enter(2); returns the submitted count or -errno. `ts`, when given, bounds the wait (EXT_ARG).
    int enter(unsigned to_submit, unsigned min_complete, unsigned flags, const __kernel_timespec* ts) noexcept {
        flags |= enter_flags_;
        io_uring_getevents_arg arg{};
        void* argp = nullptr;
        std::size_t argsz = 0;
        if (ts) {
            arg.ts = reinterpret_cast<__u64>(ts);
            flags |= IORING_ENTER_EXT_ARG;
            argp = &arg;
            argsz = sizeof(arg);
        }
        const long r = ::syscall(__NR_io_uring_enter, enter_fd_, to_submit, min_complete, flags, argp, argsz);
        return r < 0 ? -errno : static_cast<int>(r);
    }

private:
    io_uring ring_{};
    unsigned setup_flags_ = 0;      // IORING_SETUP_* the kernel accepted
    unsigned features_ = 0;         // IORING_FEAT_* the kernel reported
    int enter_fd_ = -1;             // ring fd, or its registered index
    unsigned enter_flags_ = 0;      // added to every enter: REGISTERED_RING, NO_IOWAIT
    std::bitset<256> probe_;        // supported opcodes
    std::bitset<256> kernel_probe_; // the same before loop_options::unsupported_opcodes
    bool probed_ = false;           // the probe worked (Linux 5.6+)
    bool abs_timer_ = false;        // the kernel takes absolute wait deadlines
};

} // namespace coring::detail
