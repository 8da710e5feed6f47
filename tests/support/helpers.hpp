#pragma once

// Fixtures shared by the tests: the ring setups every loop-level test runs over, a lifetime counter for leak checks,
// a stopwatch, stderr capture and a descriptor count.

#include <coring/coring.hpp>

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
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

} // namespace coring_test
