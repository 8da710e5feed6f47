#pragma once

#include <coring/detail/io_op.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/detail/sigpipe.hpp>
#include <coring/error.hpp>
#include <coring/net/stream.hpp>
#include <coring/runtime/event_loop.hpp>
#include <coring/task/gather.hpp>
#include <coring/task/task.hpp>
#include <coring/time/sleep.hpp>
#include <coring/time/timeout.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

extern char** environ;

namespace coring {

/// Where a child's standard stream goes (asyncio.subprocess.PIPE, DEVNULL, STDOUT, or None for inherit).
enum class stdio {
    inherit,   ///< the parent's descriptor
    pipe,      ///< a pipe whose other end the process object holds as a coring::stream
    null,      ///< /dev/null
    to_stdout, ///< stderr only: the same place as stdout (2>&1)
};

/// How process::spawn starts a child.
struct process_options {
    stdio in = stdio::inherit;  ///< the child's stdin
    stdio out = stdio::inherit; ///< the child's stdout
    stdio err = stdio::inherit; ///< the child's stderr
    std::string cwd;            ///< its working directory; empty: the parent's
    /// Its whole environment as "NAME=value" entries; none: the parent's.
    std::optional<std::vector<std::string>> env;
};

/// What process::run returns (asyncio's communicate() plus the return code).
struct process_result {
    int exit_code = 0; ///< the exit status, or minus the signal that ended the child (asyncio's returncode)
    std::string out;   ///< everything the child wrote to stdout
    std::string err;   ///< everything it wrote to stderr (empty with run_options::merge_stderr)
};

/// How process::run runs a child.
struct run_options {
    std::optional<std::string> input;           ///< written to the child's stdin, then closed; none: stdin is /dev/null
    std::chrono::milliseconds timeout{0};       ///< zero: none; then SIGTERM, SIGKILL after kill_grace, timeout_error
    std::chrono::milliseconds kill_grace{1000}; ///< how long a child may take to exit after SIGTERM
    bool merge_stderr = false;                  ///< stderr into stdout (2>&1)
    std::string cwd;                            ///< as process_options::cwd
    std::optional<std::vector<std::string>> env; ///< as process_options::env
};

namespace detail {

#ifndef P_PIDFD
inline constexpr idtype_t p_pidfd = static_cast<idtype_t>(3); // glibc 2.36 names it; older headers do not
#else
inline constexpr idtype_t p_pidfd = P_PIDFD;
#endif
inline constexpr unsigned op_waitid = 50; // IORING_OP_WAITID (Linux 6.7); liburing 2.3 predates it

/// Tests only: spawn() behaves as if pidfd_open were refused (the waitid polling fallback).
inline bool refuse_pidfd_for_tests = false;

/// asyncio's returncode from a waitid() result: the exit status, or minus the signal.
inline int exit_code_of(const siginfo_t& si) noexcept {
    return si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
}

/// Waits for a child's exit through its pidfd and reaps it: IORING_OP_WAITID where the kernel has it (6.7+), else a
/// poll for POLLIN on the pidfd (readable once the child exited, Linux 5.3) followed by waitid(P_PIDFD, WNOHANG),
/// which reaps it. On epoll the poll is epoll's. Cancellable; a cancelled wait reaps nothing.
class child_exit_awaitable : public io_op<child_exit_awaitable> {
public:
    child_exit_awaitable(int pidfd, pid_t pid, bool use_waitid) noexcept
        : pidfd_(pidfd), pid_(pid), waitid_(use_waitid) {}

    void prep(io_uring_sqe* sqe) noexcept {
        if (waitid_) {
            io_uring_prep_rw(static_cast<int>(op_waitid), sqe, pidfd_, nullptr, static_cast<unsigned>(p_pidfd), 0);
            sqe->file_index = WEXITED;
            sqe->addr2 = reinterpret_cast<std::uintptr_t>(&si_);
        } else {
            io_uring_prep_poll_add(sqe, pidfd_, POLLIN);
        }
    }
    bool step(int res) noexcept {
        if (res < 0) {
            err_ = -res;
            return true;
        }
        if (waitid_) return true;
        si_ = {};
        // By pid: the pidfd said the child exited, an unreaped child keeps its pid, and P_PIDFD needs Linux 5.4.
        if (::waitid(P_PID, static_cast<id_t>(pid_), &si_, WEXITED | WNOHANG) != 0) {
            err_ = errno;
            return true;
        }
        return si_.si_pid != 0; // not over yet (a spurious wake-up): poll again
    }
    /// The child's exit code (see exit_code_of). Throws cancelled_error, or std::system_error: ECHILD when someone
    /// else reaped the child first (a SIGCHLD handler that waits for any child, or SIGCHLD set to SIG_IGN).
    int await_resume() {
        if (cancelled()) throw cancelled_error();
        if (err_)
            throw std::system_error(err_, std::system_category(),
                                    "coring: waiting for process " + std::to_string(pid_));
        return exit_code_of(si_);
    }

private:
    int pidfd_;
    pid_t pid_;
    bool waitid_;
    int err_ = 0;
    siginfo_t si_{};
};

/// Clears a flag when the scope ends (a named type: GCC 12 crashes mangling a local class of a coroutine when a
/// precompiled header is in use).
struct clear_on_exit {
    bool& flag;
    ~clear_on_exit() { flag = false; }
};

/// Owns a posix_spawn_file_actions_t and a posix_spawnattr_t for one spawn.
struct spawn_setup {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    spawn_setup() {
        if (const int e = ::posix_spawn_file_actions_init(&actions); e != 0)
            throw std::system_error(e, std::system_category(), "coring: posix_spawn_file_actions_init");
        if (const int e = ::posix_spawnattr_init(&attr); e != 0) {
            ::posix_spawn_file_actions_destroy(&actions);
            throw std::system_error(e, std::system_category(), "coring: posix_spawnattr_init");
        }
    }
    spawn_setup(const spawn_setup&) = delete;
    spawn_setup& operator=(const spawn_setup&) = delete;
    ~spawn_setup() {
        ::posix_spawnattr_destroy(&attr);
        ::posix_spawn_file_actions_destroy(&actions);
    }
};

/// A descriptor closed at the end of the scope unless released.
struct owned_fd {
    int fd = -1;
    owned_fd() noexcept = default;
    explicit owned_fd(int f) noexcept : fd(f) {}
    owned_fd(owned_fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
    owned_fd& operator=(owned_fd&&) = delete;
    ~owned_fd() {
        if (fd >= 0) ::close(fd);
    }
    int release() noexcept { return std::exchange(fd, -1); }
};

/// A pipe with both ends close-on-exec and numbered above 2 (so that the child's dup2 onto 0, 1 or 2 always copies,
/// and the copy loses close-on-exec).
inline void make_pipe(owned_fd& read_end, owned_fd& write_end) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "coring: pipe2");
    read_end.fd = fds[0];
    write_end.fd = fds[1];
    for (owned_fd* e : {&read_end, &write_end}) {
        if (e->fd > 2) continue;
        const int moved = ::fcntl(e->fd, F_DUPFD_CLOEXEC, 3);
        if (moved < 0) throw std::system_error(errno, std::system_category(), "coring: fcntl(F_DUPFD_CLOEXEC)");
        ::close(e->fd);
        e->fd = moved;
    }
}

/// The PATH in an environment given as "NAME=value" entries; /bin:/usr/bin when it has none (glibc's default, which
/// Python's os.get_exec_path uses too).
inline std::string path_of(const std::vector<std::string>& env) {
    for (const std::string& e : env)
        if (e.starts_with("PATH=")) return e.substr(5);
    return "/bin:/usr/bin";
}

/// `name` found in `path` as execvp would: the first directory holding an executable regular file of that name (an
/// empty entry is the current directory). Throws std::system_error naming the program: EACCES when only files that
/// cannot be executed were found, else ENOENT.
inline std::string search_path(const std::string& name, const std::string& path) {
    bool denied = false;
    for (std::size_t start = 0;;) {
        const std::size_t colon = path.find(':', start);
        const std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
        const std::string candidate = dir.empty() ? name : dir + "/" + name;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
            if (::access(candidate.c_str(), X_OK) == 0) return candidate;
            denied = true;
        }
        if (colon == std::string::npos) break;
        start = colon + 1;
    }
    throw std::system_error(denied ? EACCES : ENOENT, std::system_category(),
                            "coring: process::spawn: " + name + " (searched in the given environment's PATH=" + path +
                                ")");
}

} // namespace detail

/// A child process (asyncio.subprocess.Process): started by spawn(), its pipes as coring streams, waited for on the
/// loop without blocking it and without a SIGCHLD handler (SIGCHLD belongs to the application).
///
/// Spawning uses posix_spawn (glibc: clone with CLONE_VM | CLONE_VFORK, not a fork of a large parent); every
/// descriptor coring opens is close-on-exec, and the child also closes every descriptor above 2 before exec
/// (close_range), so it inherits nothing but its three standard streams. Exit is watched through a pidfd
/// (pidfd_open, Linux 5.3): IORING_OP_WAITID on Linux 6.7+, a poll of the pidfd and waitid(P_PIDFD, WNOHANG)
/// elsewhere and on epoll; where pidfds are refused (an old seccomp profile) a worker thread waits instead.
///
/// A process object owns its child: destroying it before the child was waited for kills the child (SIGKILL) and
/// reaps it, so no zombie is ever left; wait() before letting it go to let the child finish. A stdin pipe blocks
/// SIGPIPE in the loop's thread (stream::from_pipe), so that a child that stopped reading makes a write fail with
/// EPIPE instead of killing the parent; children spawned here start with a clean signal mask. A program named
/// without a '/' is searched in the child's PATH (see spawn()). A child reaped by someone else (SIGCHLD set to
/// SIG_IGN, or a handler that waits for any child) makes wait() throw std::system_error (ECHILD).
/// Loop thread only; the object must outlive its operations (a pending wait() or read).
class process {
public:
    /// No child.
    process() noexcept = default;
    /// Takes `o`'s child and pipes; `o` is left with no child. Moving a process while a task waits for it aborts.
    process(process&& o) noexcept
        : pid_(std::exchange(o.pid_, -1)),
          pidfd_(std::exchange(o.pidfd_, -1)),
          status_(std::exchange(o.status_, std::nullopt)),
          in_(std::move(o.in_)),
          out_(std::move(o.out_)),
          err_(std::move(o.err_)),
          lost_(std::exchange(o.lost_, false)) {
        o.check_idle("moved");
    }
    /// Kills and reaps this object's child if it was not waited for (as the destructor does), then takes `o`'s;
    /// `o` is left with no child. Aborts if a task waits for either child.
    process& operator=(process&& o) noexcept {
        if (this != &o) {
            o.check_idle("moved");
            reap_now();
            pid_ = std::exchange(o.pid_, -1);
            pidfd_ = std::exchange(o.pidfd_, -1);
            status_ = std::exchange(o.status_, std::nullopt);
            in_ = std::move(o.in_);
            out_ = std::move(o.out_);
            err_ = std::move(o.err_);
            lost_ = std::exchange(o.lost_, false);
        }
        return *this;
    }
    process(const process&) = delete;
    process& operator=(const process&) = delete;
    /// Kills (SIGKILL) and reaps a child that was not waited for; closes the pipes.
    ~process() { reap_now(); }

    /// Starts `argv[0]` with arguments `argv[1...]` (searched in PATH when it has no '/': the PATH of
    /// process_options::env when an environment is given, /bin:/usr/bin if it has none, else the parent's, as Python's
    /// subprocess). Returns once the child
    /// runs the program: a program that cannot be run (missing, not executable) is a std::system_error naming it,
    /// and std::invalid_argument for an empty argv or stdio::to_stdout anywhere but err. Not awaited: posix_spawn
    /// does not wait for anything (and GCC 12 rejects a braced argv inside a co_await).
    [[nodiscard]] static process spawn(const std::vector<std::string>& argv, const process_options& opts = {}) {
        if (argv.empty() || argv[0].empty()) throw std::invalid_argument("coring: process::spawn: empty argv");
        if (opts.in == stdio::to_stdout || opts.out == stdio::to_stdout)
            throw std::invalid_argument("coring: process::spawn: stdio::to_stdout is for stderr only");
        detail::spawn_setup setup;
        detail::owned_fd in_r, in_w, out_r, out_w, err_r, err_w;
        auto add = [&](int e, const char* what) {
            if (e != 0)
                throw std::system_error(e, std::system_category(), std::string("coring: process::spawn: ") + what);
        };
        auto route = [&](stdio how, int target, detail::owned_fd& child_end, detail::owned_fd& our_end,
                         bool child_reads) {
            switch (how) {
            case stdio::inherit:
                return;
            case stdio::null:
                return add(::posix_spawn_file_actions_addopen(&setup.actions, target, "/dev/null",
                                                              child_reads ? O_RDONLY : O_WRONLY, 0),
                           "posix_spawn_file_actions_addopen");
            case stdio::pipe:
                if (child_reads) detail::make_pipe(child_end, our_end);
                else detail::make_pipe(our_end, child_end);
                return add(::posix_spawn_file_actions_adddup2(&setup.actions, child_end.fd, target),
                           "posix_spawn_file_actions_adddup2");
            case stdio::to_stdout:
                return add(::posix_spawn_file_actions_adddup2(&setup.actions, STDOUT_FILENO, target),
                           "posix_spawn_file_actions_adddup2");
            }
        };
        route(opts.in, STDIN_FILENO, in_r, in_w, true);
        route(opts.out, STDOUT_FILENO, out_w, out_r, false);
        route(opts.err, STDERR_FILENO, err_w, err_r, false);
        if (!opts.cwd.empty() && ::access(opts.cwd.c_str(), X_OK) != 0)
            throw std::system_error(errno, std::system_category(),
                                    "coring: process::spawn: working directory " + opts.cwd);
        if (!opts.cwd.empty())
            add(::posix_spawn_file_actions_addchdir_np(&setup.actions, opts.cwd.c_str()),
                "posix_spawn_file_actions_addchdir_np");
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
        // The application's own descriptors that lack O_CLOEXEC stay out of the child too.
        add(::posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3), "posix_spawn_file_actions_addclosefrom_np");
#endif
        // A clean signal state: the loop thread may block SIGPIPE (above) or the signals wait_signal waits for, and
        // an ignored SIGPIPE would be inherited through exec (Python resets it the same way).
        sigset_t none, defaults;
        ::sigemptyset(&none);
        ::sigemptyset(&defaults);
        ::sigaddset(&defaults, SIGPIPE);
        ::sigaddset(&defaults, SIGXFSZ);
        add(::posix_spawnattr_setsigmask(&setup.attr, &none), "posix_spawnattr_setsigmask");
        add(::posix_spawnattr_setsigdefault(&setup.attr, &defaults), "posix_spawnattr_setsigdefault");
        add(::posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
            "posix_spawnattr_setflags");

        std::vector<char*> args;
        args.reserve(argv.size() + 1);
        for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        std::vector<char*> envs;
        char** envp = environ;
        if (opts.env) {
            envs.reserve(opts.env->size() + 1);
            for (const std::string& e : *opts.env) envs.push_back(const_cast<char*>(e.c_str()));
            envs.push_back(nullptr);
            envp = envs.data();
        }
        pid_t pid = -1;
        const bool search = argv[0].find('/') == std::string::npos;
        int e = 0;
        if (search && opts.env) {
            // The child's own PATH, as Python's subprocess and asyncio do (posix_spawnp would read the parent's).
            const std::string program = detail::search_path(argv[0], detail::path_of(*opts.env));
            e = ::posix_spawn(&pid, program.c_str(), &setup.actions, &setup.attr, args.data(), envp);
        } else if (search) {
            e = ::posix_spawnp(&pid, args[0], &setup.actions, &setup.attr, args.data(), envp);
        } else {
            e = ::posix_spawn(&pid, args[0], &setup.actions, &setup.attr, args.data(), envp);
        }
        if (e != 0) throw std::system_error(e, std::system_category(), "coring: process::spawn: " + argv[0]);

        process p;
        p.pid_ = pid;
        p.pidfd_ = detail::refuse_pidfd_for_tests ? -1 : static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        if (p.pidfd_ >= 0) {
            // Between posix_spawn and pidfd_open, the child can only have been reaped by someone else (SIGCHLD set to
            // SIG_IGN, a handler that waits for any child), and then its pid may already name another process: a
            // pidfd that is not our child's is dropped, and the child counts as reaped elsewhere.
            siginfo_t si{};
            if (::waitid(detail::p_pidfd, static_cast<id_t>(p.pidfd_), &si, WEXITED | WNOHANG | WNOWAIT) != 0 &&
                errno == ECHILD) {
                ::close(std::exchange(p.pidfd_, -1));
                p.lost_ = true;
            } else {
                detail::fresh_fd(p.pidfd_); // epoll: no state left from an earlier descriptor with this number
            }
        } else if (errno == ESRCH) {
            p.lost_ = true;
        }
        if (in_w.fd >= 0) p.in_ = stream::from_pipe(in_w.release());
        if (out_r.fd >= 0) p.out_ = stream::from_pipe(out_r.release());
        if (err_r.fd >= 0) p.err_ = stream::from_pipe(err_r.release());
        return p; // the child's ends close here, so the child alone holds them
    }

    /// Runs `argv` to completion (asyncio's create_subprocess_exec + communicate): writes run_options::input to its
    /// stdin, reads all of stdout and stderr at once (no deadlock however much either gets), and waits for the exit.
    /// A non-zero exit is not an error: look at exit_code. With a timeout, a child still running then gets SIGTERM,
    /// SIGKILL after kill_grace, is reaped, and timeout_error is thrown. Cancelling the caller kills and reaps the
    /// child. Throws what spawn() throws.
    [[nodiscard]] static task<process_result> run(std::vector<std::string> argv, const run_options& opts) {
        // Options by reference, copied here, and no default argument: GCC 12 moves a temporary written inside a
        // co_await operand (a by-value argument, a default argument) bitwise, so a short std::string in it (its
        // characters inside the object) points at the old place and is later freed as if allocated.
        return run_to_end(std::make_unique<run_args>(run_args{std::move(argv), opts}));
    }
    /// run(argv, run_options{}).
    [[nodiscard]] static task<process_result> run(std::vector<std::string> argv) {
        return run_to_end(std::make_unique<run_args>(run_args{std::move(argv), run_options{}}));
    }

    /// The child's process id (-1 without a child).
    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    /// Its exit code once wait() returned it (asyncio's returncode), none before.
    [[nodiscard]] std::optional<int> returncode() const noexcept { return status_; }

    /// The pipe to the child's stdin (process_options::in = stdio::pipe); close() it to send the end of input.
    /// Throws std::logic_error when stdin is not a pipe.
    [[nodiscard]] stream& stdin_stream() { return pipe_or_throw(in_, "stdin", "in"); }
    /// The pipe from the child's stdout (process_options::out = stdio::pipe). Throws std::logic_error otherwise.
    [[nodiscard]] stream& stdout_stream() { return pipe_or_throw(out_, "stdout", "out"); }
    /// The pipe from the child's stderr (process_options::err = stdio::pipe). Throws std::logic_error otherwise.
    [[nodiscard]] stream& stderr_stream() { return pipe_or_throw(err_, "stderr", "err"); }

    /// Waits for the child to exit and reaps it; returns its exit code, or minus the signal that ended it (asyncio's
    /// returncode). Returns at once once known. Cancellable (the child keeps running; wait again later). One task at
    /// a time (std::logic_error otherwise). std::system_error (ECHILD) when someone else reaped the child.
    [[nodiscard]] task<int> wait() {
        if (status_) co_return *status_;
        if (pid_ < 0) throw std::logic_error("coring: process::wait without a child");
        if (lost_)
            throw std::system_error(ECHILD, std::system_category(),
                                    "coring: process " + std::to_string(pid_) +
                                        " was reaped by someone else (SIGCHLD ignored, or a handler that waits for "
                                        "any child)");
        if (waiting_) throw std::logic_error("coring: process::wait: another task is already waiting for this child");
        waiting_ = true;
        detail::clear_on_exit guard{waiting_};
        int code;
        if (pidfd_ >= 0) {
            code =
                co_await detail::child_exit_awaitable(pidfd_, pid_, event_loop::current().supports(detail::op_waitid));
        } else {
            // No pidfd (refused by an old seccomp profile, or before Linux 5.3): look with waitid(WNOHANG) on a timer
            // that backs off from 1 to 50 ms. Cancellable at every sleep; the pid is safe to use, since only we reap
            // this child and an unreaped child keeps its pid.
            auto backoff = std::chrono::milliseconds(1);
            for (;;) {
                siginfo_t si{};
                if (::waitid(P_PID, static_cast<id_t>(pid_), &si, WEXITED | WNOHANG) != 0)
                    throw std::system_error(errno, std::system_category(),
                                            "coring: waiting for process " + std::to_string(pid_));
                if (si.si_pid != 0) {
                    code = detail::exit_code_of(si);
                    break;
                }
                co_await sleep(backoff);
                backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
            }
        }
        settle(code);
        co_return code;
    }

    /// Sends `sig` to the child (pidfd_send_signal: never to a recycled pid). False once the child was reaped (a
    /// child that exited but was not waited for yet still takes the signal, and ignores it).
    bool kill(int sig = SIGKILL) noexcept {
        if (pid_ < 0 || status_ || lost_) return false;
        if (pidfd_ >= 0) {
            if (::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) == 0) return true;
            if (errno != ENOSYS && errno != EPERM) return false;
            // pidfd_send_signal refused (a seccomp profile): the pid is still ours, the child is not reaped.
        }
        return ::kill(pid_, sig) == 0;
    }
    /// kill(SIGTERM).
    bool terminate() noexcept { return kill(SIGTERM); }

    /// Ends the child: SIGTERM, then SIGKILL if it has not exited within `grace`; returns its exit code once reaped.
    [[nodiscard]] task<int> stop(std::chrono::milliseconds grace = std::chrono::milliseconds(1000)) {
        if (status_) co_return *status_;
        terminate();
        bool slow = false;
        try {
            co_return co_await coring::timeout(grace, wait());
        } catch (const timeout_error&) {
            slow = true;
        }
        if (slow) kill(SIGKILL);
        co_return co_await wait();
    }

private:
    struct run_args {
        std::vector<std::string> argv;
        run_options opts;
    };
    static task<process_result> run_to_end(std::unique_ptr<run_args> args) {
        const run_options& opts = args->opts;
        process p = spawn(args->argv, spawn_options_for(opts));
        process_result r;
        bool timed_out = false;
        if (opts.timeout.count() > 0) {
            try {
                co_await coring::timeout(opts.timeout, p.finish(opts.input, r));
            } catch (const timeout_error&) {
                timed_out = true;
            }
        } else {
            co_await p.finish(opts.input, r);
        }
        if (timed_out) {
            co_await p.stop(opts.kill_grace);
            throw timeout_error();
        }
        co_return r;
    }

    // A plain function, so that the options are a temporary of the spawn call rather than a local of run()'s frame.
    static process_options spawn_options_for(const run_options& opts) {
        process_options po;
        po.in = opts.input ? stdio::pipe : stdio::null;
        po.out = stdio::pipe;
        po.err = opts.merge_stderr ? stdio::to_stdout : stdio::pipe;
        po.cwd = opts.cwd;
        po.env = opts.env;
        return po;
    }

    static stream& pipe_or_throw(stream& s, const char* name, const char* field) {
        if (!s.is_open())
            throw std::logic_error(std::string("coring: the child's ") + name +
                                   " is not a pipe (or was closed): spawn it with process_options::" + field +
                                   " = stdio::pipe");
        return s;
    }

    void settle(int code) noexcept {
        status_ = code;
        if (pidfd_ >= 0) detail::close_fd(std::exchange(pidfd_, -1));
    }

    /// Writes `input` (then closes stdin) while reading stdout and stderr to their ends, all at once; then waits for
    /// the exit.
    task<> finish(const std::optional<std::string>& input, process_result& r) {
        if (input) {
            co_await gather(feed(in_, *input), drain(out_, r.out), drain(err_, r.err));
        } else {
            co_await gather(drain(out_, r.out), drain(err_, r.err));
        }
        r.exit_code = co_await wait();
    }
    static task<> feed(stream& s, const std::string& input) {
        try {
            co_await s.write_all(input);
        } catch (const std::system_error& e) {
            // A child that exits without reading all its input is not an error (asyncio ignores it too).
            if (e.code().value() != EPIPE) throw;
        }
        co_await s.close();
    }
    static task<> drain(stream& s, std::string& into) {
        if (!s.is_open()) co_return;
        constexpr std::size_t chunk = 64 * 1024;
        for (;;) {
            const std::size_t old = into.size();
            into.resize(old + chunk);
            const std::size_t n = co_await s.read(std::span<char>(into.data() + old, chunk));
            into.resize(old + n);
            if (n == 0) break;
        }
        co_await s.close();
    }

    /// The destructor's work: the pipes close, and a child not reaped yet is killed and reaped (a blocking waitid,
    /// over in a moment after SIGKILL).
    void reap_now() noexcept {
        check_idle("destroyed");
        if (pid_ >= 0 && !status_ && !lost_) {
            kill(SIGKILL);
            // By pid: an unreaped child keeps it, and waitid(P_PIDFD) needs Linux 5.4.
            siginfo_t si{};
            while (::waitid(P_PID, static_cast<id_t>(pid_), &si, WEXITED) != 0 && errno == EINTR) {}
        }
        if (pidfd_ >= 0) detail::close_fd(std::exchange(pidfd_, -1));
        pid_ = -1;
        status_.reset();
        lost_ = false;
    }

    /// Moving or destroying a process while a task waits for it would leave that wait writing into freed memory.
    void check_idle(const char* what) const noexcept {
        if (!waiting_) return;
        std::fprintf(stderr, "coring: fatal: a process object was %s while a task was waiting for its child\n", what);
        std::abort();
    }

    pid_t pid_ = -1;
    int pidfd_ = -1;
    std::optional<int> status_;
    stream in_, out_, err_;
    bool waiting_ = false;
    bool lost_ = false; // reaped by someone else before coring had a pidfd
};

} // namespace coring
