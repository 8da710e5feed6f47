// no_io_uring: runs a command where io_uring is refused, as it is in a Docker container under the default seccomp
// profile. The tests use it to run coring's examples and unit tests on the epoll backend the loop falls back to.
//
//   no_io_uring CMD [ARGS...]     install the filter, then execvp CMD: it and everything it starts get EPERM from
//                                 io_uring_setup, io_uring_enter and io_uring_register; every other call is allowed
//   no_io_uring --check           install the filter in this process and check that the three calls now fail with
//                                 EPERM while other calls still work; exit 0 if so, 1 if not
//   no_io_uring --probe           check (without installing anything) that this process already runs under such a
//                                 filter: `no_io_uring no_io_uring --probe` proves the filter survives execve
//
// Exit status: CMD's own, as it replaces this process; 127 when CMD cannot be executed; 125 when the filter cannot be
// installed; 2 for a usage error.
//
// The filter itself is in io_uring_filter.hpp.

#include "io_uring_filter.hpp"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

namespace {

using coring_test::seccomp::install_filter;

// What one io_uring call gives: 0 or more on success (a setup's descriptor is closed), else the errno.
struct outcome {
    bool ok;
    int error;
};

outcome try_setup() {
    io_uring_params params{};
    const long fd = ::syscall(__NR_io_uring_setup, 1, &params);
    if (fd >= 0) {
        ::close(static_cast<int>(fd));
        return {true, 0};
    }
    return {false, errno};
}

// A descriptor of -1: without a filter the kernel answers EBADF, so EPERM can only come from a filter.
outcome try_enter() {
    const long r = ::syscall(__NR_io_uring_enter, -1, 0, 0, 0, nullptr, 0);
    return r >= 0 ? outcome{true, 0} : outcome{false, errno};
}

outcome try_register() {
    const long r = ::syscall(__NR_io_uring_register, -1, 0, nullptr, 0);
    return r >= 0 ? outcome{true, 0} : outcome{false, errno};
}

std::string describe(outcome o) {
    if (o.ok) return "succeeded";
    return std::string("failed with ") + (o.error == EPERM ? "EPERM" : std::strerror(o.error));
}

// The value of a field of /proc/self/status ("Seccomp", "NoNewPrivs"), or "?" when it is missing.
std::string status_field(std::string_view name) {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.size() > name.size() && line.compare(0, name.size(), name) == 0 && line[name.size()] == ':') {
            const std::size_t start = line.find_first_not_of(" \t", name.size() + 1);
            return start == std::string::npos ? std::string() : line.substr(start);
        }
    }
    return "?";
}

// The checks shared by --check and --probe: the three calls are refused with EPERM and an ordinary call still gives
// its own error. Prints one line per check; returns whether all passed.
bool check_refused(const char* self) {
    bool good = true;
    const auto expect_eperm = [&](const char* call, outcome o) {
        const bool pass = !o.ok && o.error == EPERM;
        std::printf("%s: %s: %s%s\n", self, call, describe(o).c_str(), pass ? "" : " (expected EPERM)");
        good = good && pass;
    };
    expect_eperm("io_uring_setup(1, &params)", try_setup());
    expect_eperm("io_uring_enter(-1, ...)", try_enter());
    expect_eperm("io_uring_register(-1, ...)", try_register());
    // Everything else is allowed: fcntl on a descriptor that is not open still reports EBADF, not EPERM.
    const bool other = ::fcntl(-1, F_GETFD) == -1 && errno == EBADF;
    std::printf("%s: fcntl(-1, F_GETFD): %s\n", self, other ? "EBADF, as without a filter" : "unexpected result");
    good = good && other;
    return good;
}

int check(const char* self) {
    // Before: with io_uring available setup succeeds and enter on -1 is EBADF. Already EPERM means something else (a
    // container's profile, kernel.io_uring_disabled) refuses io_uring, and the checks below cannot tell that apart
    // from this filter; they still show that the filter installs and that it refuses what it should.
    const outcome before = try_setup();
    std::printf("%s: before the filter, io_uring_setup %s\n", self, describe(before).c_str());
    if (!before.ok && before.error == EPERM)
        std::printf("%s: note: io_uring was refused before this filter was installed (Seccomp: %s)\n", self,
                    status_field("Seccomp").c_str());
    if (!install_filter()) {
        std::fprintf(stderr, "%s: cannot install the seccomp filter: %s\n", self, std::strerror(errno));
        return 125;
    }
    std::printf("%s: filter installed (Seccomp: %s, NoNewPrivs: %s)\n", self, status_field("Seccomp").c_str(),
                status_field("NoNewPrivs").c_str());
    const bool good = check_refused(self);
    std::printf("%s: %s\n", self, good ? "ok: io_uring is refused with EPERM" : "FAILED");
    return good ? 0 : 1;
}

int probe(const char* self) {
    // Seccomp mode 2 is "filter": without it an EPERM would come from elsewhere (kernel.io_uring_disabled).
    const std::string mode = status_field("Seccomp");
    std::printf("%s: Seccomp: %s, NoNewPrivs: %s\n", self, mode.c_str(), status_field("NoNewPrivs").c_str());
    bool good = check_refused(self);
    if (mode != "2") {
        std::printf("%s: this process runs under no seccomp filter (Seccomp: %s, expected 2)\n", self, mode.c_str());
        good = false;
    }
    std::printf("%s: %s\n", self, good ? "ok: this process runs with io_uring refused by a seccomp filter" : "FAILED");
    return good ? 0 : 1;
}

int usage(const char* self, int status) {
    std::fprintf(status == 0 ? stdout : stderr,
                 "usage: %s CMD [ARGS...]   run CMD with io_uring_setup, io_uring_enter and io_uring_register\n"
                 "                          refused with EPERM by a seccomp filter (as in Docker's default profile)\n"
                 "       %s --check         install the filter here and check that it refuses io_uring\n"
                 "       %s --probe         check that this process already runs under such a filter\n",
                 self, self, self);
    return status;
}

} // namespace

int main(int argc, char** argv) {
    const char* self = "no_io_uring";
    if (argc < 2) return usage(self, 2);
    const std::string_view first = argv[1];
    if (first == "--check") return argc == 2 ? check(self) : usage(self, 2);
    if (first == "--probe") return argc == 2 ? probe(self) : usage(self, 2);
    if (first == "--help" || first == "-h") return usage(self, 0);
    if (first != "--" && first.starts_with("-")) {
        std::fprintf(stderr, "%s: unknown option %s\n", self, argv[1]);
        return usage(self, 2);
    }
    const int command = first == "--" ? 2 : 1; // `--` lets a command's name start with '-'
    if (command >= argc) return usage(self, 2);

    if (!install_filter()) {
        std::fprintf(stderr, "%s: cannot install the seccomp filter: %s\n", self, std::strerror(errno));
        return 125;
    }
    // execvp rather than fork and wait: the command takes over this process, so its exit status, its signals (a
    // SIGTERM sent to this PID reaches it) and its standard streams are the caller's, untouched.
    ::execvp(argv[command], argv + command);
    std::fprintf(stderr, "%s: cannot run %s: %s\n", self, argv[command], std::strerror(errno));
    return 127;
}
