#pragma once

// Fixtures of the networking tests: the socket families a stream test runs over, a connected pair of streams, a
// checksum for long transfers, descriptor limits, and child processes (forked servers and real peers such as
// CPython or curl) that are waited for with a deadline instead of forever.

#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

extern char** environ;

/// Catch2 prints addresses as text in failed checks.
template <>
struct Catch::StringMaker<coring::address> {
    static std::string convert(const coring::address& a) { return a.empty() ? "(empty address)" : a.to_string(); }
};

namespace coring_test {

// ---- socket families --------------------------------------------------------------------------------------------

/// A unique name for a Unix-domain socket of this process ("/tmp/coring-net-<pid>-<n>.sock", or the same after "@"
/// for an abstract one).
inline std::string unique_socket_name(bool abstract) {
    static std::atomic<int> counter{0};
    const std::string base =
        "coring-net-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1)) + ".sock";
    return abstract ? "@" + base : "/tmp/" + base;
}

/// Whether this machine can listen on [::1] (containers without IPv6 cannot).
inline bool ipv6_available() {
    const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

struct tcp_v4 {
    using stream_type = coring::tcp_stream;
    using listener_type = coring::tcp_listener;
    static constexpr const char* name = "tcp-v4";
    static constexpr const char* bind_at = "127.0.0.1:0";
};
struct tcp_v6 {
    using stream_type = coring::tcp_stream;
    using listener_type = coring::tcp_listener;
    static constexpr const char* name = "tcp-v6";
    static constexpr const char* bind_at = "[::1]:0";
};
struct unix_path {
    using stream_type = coring::unix_stream;
    using listener_type = coring::unix_listener;
    static constexpr const char* name = "unix";
    static constexpr bool abstract = false;
};
struct unix_abstract {
    using stream_type = coring::unix_stream;
    using listener_type = coring::unix_listener;
    static constexpr const char* name = "unix-abstract";
    static constexpr bool abstract = true;
};

template <class F>
inline constexpr bool is_tcp = std::is_same_v<typename F::stream_type, coring::tcp_stream>;

/// A listener of family F that clients of the test can connect to; removes its socket file when destroyed.
template <class F>
class test_server {
public:
    using stream_type = typename F::stream_type;

    test_server() {
        if constexpr (is_tcp<F>) {
            listener_ = coring::tcp_listener::bind(coring::address::parse(F::bind_at));
        } else {
            name_ = unique_socket_name(F::abstract);
            listener_ = coring::unix_listener::bind(name_);
        }
    }
    explicit test_server(const coring::listen_options& options) {
        if constexpr (is_tcp<F>) {
            listener_ = coring::tcp_listener::bind(coring::address::parse(F::bind_at), options);
        } else {
            name_ = unique_socket_name(F::abstract);
            listener_ = coring::unix_listener::bind(name_, options);
        }
    }
    test_server(const test_server&) = delete;
    test_server& operator=(const test_server&) = delete;
    ~test_server() {
        if (!name_.empty() && name_.front() != '@') ::unlink(name_.c_str());
    }

    [[nodiscard]] auto accept() { return listener_.accept(); }
    [[nodiscard]] auto connect() const {
        if constexpr (is_tcp<F>) return coring::tcp_stream::connect(listener_.local_address());
        else return coring::unix_stream::connect(name_);
    }
    [[nodiscard]] const coring::address& address() const noexcept { return listener_.local_address(); }
    [[nodiscard]] typename F::listener_type& listener() noexcept { return listener_; }

private:
    typename F::listener_type listener_;
    std::string name_;
};

/// Two ends of one connection.
template <class S>
struct stream_pair {
    S client;
    S server;
};

/// Connects a client to a fresh listener of family F and returns both ends (the listener is gone afterwards).
template <class F>
coring::task<stream_pair<typename F::stream_type>> connect_pair(F) {
    using S = typename F::stream_type;
    test_server<F> srv;
    auto accepted = coring::spawn(srv.accept());
    std::optional<S> client;
    std::exception_ptr failed;
    try {
        client.emplace(co_await srv.connect());
    } catch (...) {
        failed = std::current_exception();
    }
    if (failed) {
        accepted.cancel();
        try {
            (void)co_await accepted;
        } catch (...) {}
        std::rethrow_exception(failed);
    }
    S server = co_await accepted;
    co_return stream_pair<S>{std::move(*client), std::move(server)};
}

/// Runs `body(family)` once per socket family, each in its own Catch2 section.
template <class Body>
void for_each_family(Body&& body) {
    SECTION("tcp-v4") { body(tcp_v4{}); }
    SECTION("tcp-v6") {
        if (ipv6_available()) body(tcp_v6{});
        else WARN("no IPv6 loopback on this machine: the IPv6 case is skipped");
    }
    SECTION("unix") { body(unix_path{}); }
    SECTION("unix-abstract") { body(unix_abstract{}); }
}

/// SO_SNDBUF and SO_RCVBUF of both ends (through tcp_stream's setters for TCP).
template <class S>
void shrink_buffers(S& s, int bytes) {
    if constexpr (std::is_same_v<S, coring::tcp_stream>) {
        s.set_send_buffer_size(bytes);
        s.set_receive_buffer_size(bytes);
    } else {
        REQUIRE(::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes) == 0);
        REQUIRE(::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes) == 0);
    }
}

/// Small buffers that still move data at a normal pace: a 4 KiB send buffer; a 4 KiB receive buffer on Unix sockets
/// but 32 KiB on TCP, because loopback TCP with a small receive buffer crawls in the kernel itself, a window problem,
/// not coring's: with 4 to 12 KiB at about 50 KiB/s on Linux 6.18, and with 16 KiB too in a QEMU guest under TCG
/// (8 MiB in 54 s with blocking sockets in C, on 6.1 and 6.12 alike; 1.3 s with 32 KiB).
template <class S>
void small_buffers(S& s) {
    if constexpr (std::is_same_v<S, coring::tcp_stream>) {
        s.set_send_buffer_size(4096);
        s.set_receive_buffer_size(32768);
    } else {
        shrink_buffers(s, 4096);
    }
}

/// TCP_NODELAY for TCP streams (so that pieces written apart arrive apart); nothing for Unix-domain ones.
template <class S>
void no_delay(S& s) {
    if constexpr (std::is_same_v<S, coring::tcp_stream>) s.set_nodelay(true);
}

/// Writes `pieces` one by one, `gap` apart (a slow peer), then optionally half-closes.
template <class S>
coring::task<> send_pieces(S& s, std::vector<std::string> pieces, std::chrono::milliseconds gap, bool then_shutdown) {
    for (const std::string& p : pieces) {
        co_await coring::sleep(gap);
        co_await s.write_all(p);
    }
    if (then_shutdown) co_await s.shutdown();
}

// ---- data ---------------------------------------------------------------------------------------------------------

/// A deterministic byte stream (xorshift64*, eight bytes at a time).
class pattern {
public:
    explicit pattern(std::uint64_t seed) noexcept : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
    /// Fills `out` (whose size is a multiple of 8) with the next bytes.
    void fill(std::span<std::byte> out) noexcept {
        for (std::size_t i = 0; i + 8 <= out.size(); i += 8) {
            state_ ^= state_ >> 12;
            state_ ^= state_ << 25;
            state_ ^= state_ >> 27;
            const std::uint64_t w = state_ * 0x2545F4914F6CDD1Dull;
            std::memcpy(out.data() + i, &w, 8);
        }
    }
    /// `n` bytes as a string (n a multiple of 8).
    std::string text(std::size_t n) {
        std::string s(n, '\0');
        fill(std::as_writable_bytes(std::span(s)));
        return s;
    }

private:
    std::uint64_t state_;
};

/// An order-sensitive checksum of a byte stream that arrives in pieces of any size: FNV-1a over 64-bit words (bytes
/// carried over between pieces), plus the length. Equal for the same bytes however they were split.
class checksum {
public:
    void update(std::span<const std::byte> data) noexcept {
        const std::byte* p = data.data();
        std::size_t n = data.size();
        total_ += n;
        while (npending_ && n) {
            pending_[npending_++] = *p++;
            --n;
            if (npending_ == 8) {
                mix_word(pending_);
                npending_ = 0;
            }
        }
        for (; n >= 8; p += 8, n -= 8) mix_word(p);
        // Bytes are left only when the carried-over ones made a whole word (npending_ is 0 then). Written as one copy
        // of fewer than 8 bytes: GCC 12 -O2 cannot prove a byte loop stays inside pending_ and fails the build
        // (-Werror=aggressive-loop-optimizations).
        if (n) {
            std::memcpy(pending_, p, n);
            npending_ = n;
        }
    }
    void update(std::string_view s) noexcept { update(std::as_bytes(std::span(s))); }
    [[nodiscard]] std::uint64_t value() const noexcept {
        std::uint64_t h = h_;
        for (std::size_t i = 0; i < npending_; ++i) h = (h ^ static_cast<std::uint64_t>(pending_[i])) * prime;
        return (h ^ total_) * prime;
    }
    [[nodiscard]] std::uint64_t bytes() const noexcept { return total_; }

private:
    static constexpr std::uint64_t prime = 0x100000001b3ull;
    void mix_word(const std::byte* p) noexcept {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        h_ = (h_ ^ w) * prime;
    }
    std::uint64_t h_ = 0xcbf29ce484222325ull;
    std::uint64_t total_ = 0;
    std::byte pending_[8]{};
    std::size_t npending_ = 0;
};

// ---- descriptors ----------------------------------------------------------------------------------------------------

/// Raises the soft RLIMIT_NOFILE to the hard limit while alive; returns the limit it got.
class raised_fd_limit {
public:
    raised_fd_limit() {
        ::getrlimit(RLIMIT_NOFILE, &saved_);
        rlimit r = saved_;
        r.rlim_cur = r.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &r) == 0) now_ = r.rlim_cur;
        else now_ = saved_.rlim_cur;
    }
    raised_fd_limit(const raised_fd_limit&) = delete;
    raised_fd_limit& operator=(const raised_fd_limit&) = delete;
    ~raised_fd_limit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
    [[nodiscard]] rlim_t limit() const noexcept { return now_; }

private:
    rlimit saved_{};
    rlim_t now_ = 0;
};

/// A pipe (close-on-exec) closed on scope exit.
struct pipe_fds {
    int r = -1, w = -1;
    pipe_fds() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        r = fds[0];
        w = fds[1];
    }
    pipe_fds(const pipe_fds&) = delete;
    pipe_fds& operator=(const pipe_fds&) = delete;
    ~pipe_fds() {
        close_read();
        close_write();
    }
    void close_read() noexcept {
        if (r >= 0) ::close(r);
        r = -1;
    }
    void close_write() noexcept {
        if (w >= 0) ::close(w);
        w = -1;
    }
};

/// Reads exactly `n` bytes from a blocking descriptor within `limit`; false on timeout or end of file.
inline bool read_full(int fd, void* out, std::size_t n, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    auto* p = static_cast<char*>(out);
    while (n) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd pfd{fd, POLLIN, 0};
        const int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        const ssize_t got = ::read(fd, p, n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        p += got;
        n -= static_cast<std::size_t>(got);
    }
    return true;
}

/// Writes all of `data` to a blocking descriptor.
inline bool write_full(int fd, const void* data, std::size_t n) {
    const auto* p = static_cast<const char*>(data);
    while (n) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

/// Waits for child `pid` for at most `limit`, then kills it. Returns its wait status; `timed_out` says whether it had
/// to be killed.
inline int wait_child(pid_t pid, std::chrono::milliseconds limit, bool* timed_out = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (timed_out) *timed_out = false;
            return status;
        }
        if (r < 0 && errno != EINTR) return -1;
        if (std::chrono::steady_clock::now() >= deadline) {
            ::kill(pid, SIGKILL);
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            if (timed_out) *timed_out = true;
            return status;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

/// How long a peer program may take to start (to print its port, or to run a short client script): CPython spends
/// 10 to 12 s on `import asyncio` alone in a QEMU guest under TCG (0.05 s natively), which the 10 and 15 s bounds
/// this replaces did not allow. Only a bound for a peer that hangs; CTest's 60 s per case is the other.
inline constexpr std::chrono::seconds peer_start_limit{40};

/// What a finished child process left: its wait status and what it wrote.
struct process_result {
    int status = -1;
    bool timed_out = false;
    std::string out, err;
    [[nodiscard]] bool succeeded() const noexcept {
        return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    [[nodiscard]] std::string describe() const {
        std::string s = timed_out             ? "timed out (killed)"
                        : WIFEXITED(status)   ? "exit status " + std::to_string(WEXITSTATUS(status))
                        : WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                              : "status " + std::to_string(status);
        return s + "\n--- stdout:\n" + out + "\n--- stderr:\n" + err;
    }
};

/// The process part of the peers a test starts (child_process, piped_process, nginx): a program started with
/// posix_spawn, killed (SIGKILL) and reaped by kill() or on destruction if it is still running.
class spawned_process {
public:
    spawned_process(const spawned_process&) = delete;
    spawned_process& operator=(const spawned_process&) = delete;

protected:
    spawned_process() = default;
    ~spawned_process() { kill(); }

    /// Starts `argv` (argv[0] is the program's path) with the file actions `fa`, which it destroys. 0, or
    /// posix_spawn's error (then pid_ is -1): the caller closes the pipe ends the child took, then fails the test.
    int spawn(const std::vector<std::string>& argv, posix_spawn_file_actions_t& fa) {
        std::vector<char*> args;
        for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        const int r = ::posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0) pid_ = -1;
        return r;
    }
    void kill() noexcept {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {}
        pid_ = -1;
    }

    pid_t pid_ = -1;
};

/// A program started with posix_spawn, its stdout and stderr on pipes. wait() collects them with a deadline.
class child_process : spawned_process {
public:
    explicit child_process(const std::vector<std::string>& argv) {
        int out[2], err[2];
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
        const int r = spawn(argv, fa);
        ::close(out[1]);
        ::close(err[1]);
        out_ = out[0];
        err_ = err[0];
        if (r != 0) FAIL("posix_spawn " << argv[0] << ": " << std::strerror(r));
    }
    ~child_process() {
        kill();
        if (out_ >= 0) ::close(out_);
        if (err_ >= 0) ::close(err_);
    }

    /// One line of its stdout (without the newline), read within `limit`; empty on timeout or end of file.
    std::string read_line(std::chrono::milliseconds limit) {
        std::string line;
        char c;
        while (read_full(out_, &c, 1, limit)) {
            if (c == '\n') return line;
            line += c;
        }
        return line;
    }

    /// Collects stdout and stderr until the child exits, for at most `limit` (then kills it). Blocking: call it from
    /// coring::to_thread while a loop serves the child.
    process_result wait(std::chrono::milliseconds limit) {
        process_result res;
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            pollfd p[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || (out_ < 0 && err_ < 0)) break;
            const int r = ::poll(p, 2, static_cast<int>(std::min<long long>(left.count(), 50)));
            if (r < 0 && errno != EINTR) break;
            drain(p[0], out_, res.out);
            drain(p[1], err_, res.err);
        }
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        res.status = wait_child(pid_, std::max(left, std::chrono::milliseconds(0)), &res.timed_out);
        pid_ = -1;
        return res;
    }

private:
    static void drain(const pollfd& p, int& fd, std::string& into) {
        if (fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) return;
        char buf[4096];
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            into.append(buf, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EINTR) {
            ::close(fd);
            fd = -1;
        }
    }

    int out_ = -1;
    int err_ = -1;
};

/// Whether an executable exists at `path`.
inline bool executable(const char* path) { return ::access(path, X_OK) == 0; }

/// A child made with fork() that runs `body(report_fd)` and exits (_exit) with the int it returns, 127 when it throws.
/// The body makes its own event loop: a ring (and its worker threads) must never be carried across a fork. It reports
/// to the parent through `report_fd`, the write end of a pipe whose other end report() reads. A child still running
/// when the object goes is killed, so a failed check in the parent never leaves a server behind.
class forked_child {
public:
    template <class Body>
    explicit forked_child(Body&& body) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        std::fflush(nullptr); // output buffered before the fork must not be written twice
        pid_ = ::fork();
        if (pid_ == 0) {
            ::close(fds[0]);
            int code = 127;
            try {
                code = body(fds[1]);
            } catch (...) {}
            ::_exit(code); // not exit(): the parent's atexit handlers and Catch2's state are not the child's
        }
        ::close(fds[1]);
        report_ = fds[0];
        REQUIRE(pid_ > 0);
    }
    forked_child(const forked_child&) = delete;
    forked_child& operator=(const forked_child&) = delete;
    ~forked_child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {}
        }
        if (report_ >= 0) ::close(report_);
    }

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    /// Reads exactly `n` bytes the child wrote to its report descriptor, within `limit`; false on timeout or when the
    /// child closed it first.
    bool report(void* out, std::size_t n, std::chrono::milliseconds limit) { return read_full(report_, out, n, limit); }
    /// Sends `sig`, then waits for the child to exit for at most `limit` (then kills it); returns its wait status.
    int stop(int sig, std::chrono::milliseconds limit, bool* timed_out = nullptr) {
        ::kill(pid_, sig);
        const int status = wait_child(pid_, limit, timed_out);
        pid_ = -1;
        return status;
    }

private:
    pid_t pid_ = -1;
    int report_ = -1;
};

/// "exit status 0", "killed by signal 9": a wait status for messages.
inline std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
    return "wait status " + std::to_string(status);
}

/// SIGPIPE back at its default action (terminate the process) while alive, then as before: with it, a send that
/// forgot MSG_NOSIGNAL kills the test binary instead of passing unnoticed under an inherited SIG_IGN.
class default_sigpipe {
public:
    default_sigpipe() {
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        REQUIRE(::sigaction(SIGPIPE, &dfl, &saved_) == 0);
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        REQUIRE(::pthread_sigmask(SIG_UNBLOCK, &pipe_only, &saved_mask_) == 0);
    }
    default_sigpipe(const default_sigpipe&) = delete;
    default_sigpipe& operator=(const default_sigpipe&) = delete;
    ~default_sigpipe() {
        ::pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
        ::sigaction(SIGPIPE, &saved_, nullptr);
    }

private:
    struct sigaction saved_ {};
    sigset_t saved_mask_{};
};

/// SO_LINGER {1, 0}: closing `fd` then sends a TCP reset instead of a FIN (an abortive close).
inline void reset_on_close(int fd) {
    const linger abortive{1, 0};
    REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive) == 0);
}

/// What an I/O operation failed with: errno and what(), or code 0 when it succeeded.
} // namespace coring_test
