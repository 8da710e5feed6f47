#pragma once

// Fixtures shared by the tests: the ring setups every loop-level test runs over, a lifetime counter for leak checks,
// a stopwatch, stderr capture and a descriptor count.

#include <coring/coring.hpp>

#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace coring_test {

struct named_setup {
    std::string name;
    coring::loop_options options;
};

/// The ring setups loop-level tests run over, as liburing runs its tests over several ring setups: the default (every
/// optional flag the kernel accepts), a plain ring (none), a tiny ring that is full all the time (8 SQ entries, 16 CQ
/// entries, so completions overflow), waits with relative deadlines (kernels before 6.12), and timers through one
/// IORING_OP_TIMEOUT instead of EXT_ARG waits (kernels before 5.11).
inline std::vector<named_setup> setups() {
    std::vector<named_setup> v;
    v.push_back({"default", {}});
    coring::loop_options plain;
    plain.single_issuer = plain.defer_taskrun = plain.coop_taskrun = plain.submit_all = false;
    plain.register_ring_fd = false;
    v.push_back({"plain", plain});
    coring::loop_options tiny;
    tiny.entries = 8;
    tiny.cq_entries = 16;
    v.push_back({"tiny", tiny});
    coring::loop_options relative;
    relative.absolute_wait_deadline = false;
    v.push_back({"relative-wait", relative});
    coring::loop_options timer_sqe;
    timer_sqe.wait_timeout_arg = false;
    v.push_back({"timer-sqe", timer_sqe});
    return v;
}

/// Counts live instances of itself.
struct lifetime {
    static inline int alive = 0;
    int value = 0;
    explicit lifetime(int v = 0) noexcept : value(v) { ++alive; }
    lifetime(const lifetime& o) noexcept : value(o.value) { ++alive; }
    lifetime(lifetime&& o) noexcept : value(o.value) { ++alive; }
    lifetime& operator=(const lifetime&) = default;
    lifetime& operator=(lifetime&&) = default;
    ~lifetime() { --alive; }
};

/// Seconds since construction.
class stopwatch {
public:
    [[nodiscard]] double seconds() const {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }

private:
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

/// Redirects stderr into a temporary file while alive; text() returns what was written so far.
class stderr_capture {
public:
    stderr_capture() {
        std::fflush(stderr);
        file_ = std::tmpfile();
        saved_ = ::dup(STDERR_FILENO);
        ::dup2(::fileno(file_), STDERR_FILENO);
    }
    stderr_capture(const stderr_capture&) = delete;
    stderr_capture& operator=(const stderr_capture&) = delete;
    ~stderr_capture() {
        restore();
        std::fclose(file_);
    }
    std::string text() {
        std::fflush(stderr);
        std::string out;
        std::rewind(file_);
        char buf[4096];
        for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, file_)) > 0;) out.append(buf, n);
        return out;
    }
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
        saved_ = -1;
    }

private:
    std::FILE* file_ = nullptr;
    int saved_ = -1;
};

/// Open descriptors of this process.
inline int open_fds() {
    int n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (::readdir(d)) ++n;
        ::closedir(d);
    }
    return n - 3; // ".", ".." and the directory's own descriptor
}

/// Whether `hay` contains `needle` (messages and bodies in checks).
inline bool contains(std::string_view hay, std::string_view needle) {
    return hay.find(needle) != std::string_view::npos;
}

/// What an awaitable failed with: the errno and message of the std::system_error it threw (code 0 if none).
struct io_failure {
    int code = 0;
    std::string what;
};

/// Awaits `aw` and returns the std::system_error it threw (code 0 if none): lets a test check an error's errno and
/// message without a try block around a co_await in each place.
template <class Awaitable>
coring::task<io_failure> failure_of(Awaitable aw) {
    io_failure f;
    try {
        (void)co_await std::move(aw);
    } catch (const std::system_error& e) {
        f.code = e.code().value();
        f.what = e.what();
    }
    co_return f;
}

/// Lets the tasks that are ready run for `turns` loop turns (queues, locks and futures settle in a few).
inline coring::task<> settle(int turns = 5) {
    for (int i = 0; i < turns; ++i) co_await coring::yield_now();
}

/// Fails with std::runtime_error("sibling failed") after one turn: the sibling that cancels a gather.
inline coring::task<> fail_soon() {
    co_await coring::yield_now();
    throw std::runtime_error("sibling failed");
}

/// Returns `v` after `d`, appending it to `*order` first if given.
inline coring::task<int> after(std::chrono::milliseconds d, int v, std::vector<int>* order = nullptr) {
    co_await coring::sleep(d);
    if (order) order->push_back(v);
    co_return v;
}

/// Fails with std::runtime_error("failed") after `d`.
inline coring::task<int> fails_after(std::chrono::milliseconds d) {
    co_await coring::sleep(d);
    throw std::runtime_error("failed");
}

/// Two connected local stream sockets: a receive on `r` is an operation that waits on both backends (IORING_OP_RECV
/// in the kernel on io_uring, parked on its descriptor on epoll), where a raw submit() is io_uring's alone.
struct socket_pair {
    coring::unix_stream r, w;
};
inline socket_pair make_socket_pair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
        throw std::system_error(errno, std::generic_category(), "socketpair");
    }
    return {coring::unix_stream(fds[0]), coring::unix_stream(fds[1])};
}

/// The four ways a caller spells a path (TEMPLATE_TEST_CASE parameters): each turns a std::string into one.
struct as_fs_path {
    std::filesystem::path operator()(const std::string& s) const { return s; }
};
struct as_string {
    std::string operator()(const std::string& s) const { return s; }
};
struct as_string_view {
    std::string_view operator()(const std::string& s) const { return s; }
};
struct as_c_str {
    const char* operator()(const std::string& s) const { return s.c_str(); }
};

} // namespace coring_test
