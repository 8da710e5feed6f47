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
// The filter is classic BPF written by hand (no libseccomp): eleven instructions, and the tests then need nothing
// beyond the kernel. Like Docker's profile, it returns an error rather than killing the process, so a program can see
// the refusal and fall back; EPERM is the errno Docker's profile gives for calls it does not allow.

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

// The architecture whose system call table the filter's numbers belong to. A system call made through another table
// (a 32-bit program, or int 0x80 from a 64-bit one) has the same number for a different call, so the filter first
// checks seccomp_data::arch. io_uring's three calls were added after the tables were unified (Linux 5.1): they are
// 425, 426 and 427 in every table, so the compatibility table is checked with the same numbers. x32 programs use the
// x86_64 table with bit 30 set in the number (__X32_SYSCALL_BIT): the filter masks it off, so they are refused too.
#if defined(__x86_64__)
constexpr std::uint32_t native_arch = AUDIT_ARCH_X86_64;
constexpr std::uint32_t compat_arch = AUDIT_ARCH_I386;
constexpr std::uint32_t syscall_number_mask = ~std::uint32_t{0x40000000}; // __X32_SYSCALL_BIT
#elif defined(__aarch64__)
constexpr std::uint32_t native_arch = AUDIT_ARCH_AARCH64;
constexpr std::uint32_t compat_arch = AUDIT_ARCH_ARM;
constexpr std::uint32_t syscall_number_mask = ~std::uint32_t{0};
#else
#error "no_io_uring: unknown architecture; add its AUDIT_ARCH_* value (<linux/audit.h>) and its compat one here"
#endif

static_assert(__NR_io_uring_setup == 425 && __NR_io_uring_enter == 426 && __NR_io_uring_register == 427,
              "io_uring's system call numbers are the same in every table (see native_arch)");

constexpr sock_filter statement(std::uint16_t code, std::uint32_t k) { return {code, 0, 0, k}; }
constexpr sock_filter jump(std::uint16_t code, std::uint32_t k, std::uint8_t if_true, std::uint8_t if_false) {
    return {code, if_true, if_false, k};
}

constexpr std::uint16_t load_word = BPF_LD | BPF_W | BPF_ABS; // A = the 32-bit word of seccomp_data at offset k
constexpr std::uint16_t jump_if_equal = BPF_JMP | BPF_JEQ | BPF_K;

// Jump offsets count the instructions skipped after the jump: 0 falls through to the next one.
constexpr sock_filter filter[] = {
    /* 0 */ statement(load_word, offsetof(seccomp_data, arch)),
    /* 1 */ jump(jump_if_equal, native_arch, 2, 0), // to 4
    /* 2 */ jump(jump_if_equal, compat_arch, 1, 0), // to 4
    // An architecture this filter does not know: its numbers could mean anything, so nothing is allowed (libseccomp's
    // default for a foreign architecture too). The process dies of SIGSYS ("Bad system call" in a shell).
    /* 3 */ statement(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    /* 4 */ statement(load_word, offsetof(seccomp_data, nr)),
    /* 5 */ statement(BPF_ALU | BPF_AND | BPF_K, syscall_number_mask),
    /* 6 */ jump(jump_if_equal, __NR_io_uring_setup, 3, 0),    // to 10
    /* 7 */ jump(jump_if_equal, __NR_io_uring_enter, 2, 0),    // to 10
    /* 8 */ jump(jump_if_equal, __NR_io_uring_register, 1, 0), // to 10
    /* 9 */ statement(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    // The low 16 bits of SECCOMP_RET_ERRNO's value are the errno the call returns.
    /* 10 */ statement(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
};

// Installs the filter in the calling thread; execve keeps it, and every process and thread started later inherits
// it. Returns false with errno set when the kernel refuses.
bool install_filter() {
    // Without CAP_SYS_ADMIN the kernel accepts a filter only from a process that gave up gaining privileges through
    // execve (a set-user-ID program could otherwise be run under a filter that makes it misbehave).
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
    sock_fprog program{};
    program.len = static_cast<unsigned short>(std::size(filter));
    program.filter = const_cast<sock_filter*>(filter); // the kernel copies it and never writes to it
    // seccomp(2) first (Linux 3.17); prctl(PR_SET_SECCOMP) is the older spelling of the same thing.
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) == 0) return true;
    if (errno != ENOSYS) return false;
    return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) == 0;
}

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
