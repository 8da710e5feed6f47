#include <coring/coring.hpp>
#include <coring/detail/ring.hpp>

#include <catch2/catch.hpp>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <string>
#include <system_error>

namespace {

#if defined(__x86_64__)
constexpr unsigned audit_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned audit_arch = AUDIT_ARCH_AARCH64;
#else
constexpr unsigned audit_arch = 0;
#endif

struct child_result {
    int code = -1;
    std::string what;
};

/// Forks a child that installs a seccomp filter making io_uring_setup fail with `err` (as Docker's default profile
/// does with EPERM), then tries to create an event loop; returns the error code and message it got.
child_result construct_under_seccomp(int err) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, audit_arch, 1, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
        std::string out;
        if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
            out = "-1|could not install the seccomp filter";
        } else {
            try {
                coring::event_loop loop;
                out = "0|no error";
            } catch (const std::system_error& e) {
                out = std::to_string(e.code().value()) + "|" + e.what();
            } catch (const std::exception& e) {
                out = "-2|" + std::string(e.what());
            }
        }
        (void)!::write(fds[1], out.data(), out.size());
        ::_exit(0);
    }
    ::close(fds[1]);
    std::string text;
    char buf[1024];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    child_result r;
    const auto bar = text.find('|');
    REQUIRE(bar != std::string::npos);
    r.code = std::stoi(text.substr(0, bar));
    r.what = text.substr(bar + 1);
    return r;
}

} // namespace

TEST_CASE("setup errors - a seccomp filter refusing io_uring_setup gives EPERM with the reason", "[loop][setup]") {
    if (audit_arch == 0) return; // no seccomp arch constant for this CPU: nothing to test
    const child_result r = construct_under_seccomp(EPERM);
    INFO(r.what);
    REQUIRE(r.code == EPERM);
    CHECK_THAT(r.what, Catch::StartsWith("coring: cannot create an event loop: "));
    CHECK_THAT(r.what, Catch::Contains("seccomp"));
    CHECK_THAT(r.what, Catch::Contains("Docker"));
    const int disabled = coring::detail::read_sysctl_int("/proc/sys/kernel/io_uring_disabled");
    if (disabled == 0) CHECK_THAT(r.what, Catch::Contains("kernel.io_uring_disabled is 0"));
    CHECK_THAT(r.what, Catch::EndsWith("Operation not permitted"));
}

TEST_CASE("setup errors - a kernel without io_uring (ENOSYS) is named as such", "[loop][setup]") {
    if (audit_arch == 0) return; // no seccomp arch constant for this CPU: nothing to test
    const child_result r = construct_under_seccomp(ENOSYS);
    INFO(r.what);
    REQUIRE(r.code == ENOSYS);
    CHECK_THAT(r.what, Catch::Contains("does not provide io_uring"));
    CHECK_THAT(r.what, Catch::Contains("CONFIG_IO_URING"));
}

TEST_CASE("setup errors - the sysctl, group and locked-memory cases say what to change", "[loop][setup]") {
    using coring::detail::setup_environment;
    using coring::detail::setup_failure_message;
    setup_environment env;
    env.io_uring_disabled = 2;
    CHECK_THAT(setup_failure_message(EPERM, env, 256), Catch::Contains("kernel.io_uring_disabled is 2") &&
                                                           Catch::Contains("sysctl -w kernel.io_uring_disabled=0"));
    env.io_uring_disabled = 1;
    env.io_uring_group = 1234;
    CHECK_THAT(setup_failure_message(EPERM, env, 256),
               Catch::Contains("kernel.io_uring_disabled is 1") && Catch::Contains("kernel.io_uring_group (1234)"));
    env.io_uring_disabled = -1;
    CHECK_THAT(setup_failure_message(EPERM, env, 256),
               Catch::Contains("no kernel.io_uring_disabled sysctl") && Catch::Contains("seccomp"));
    env.memlock_kib = 64;
    CHECK_THAT(setup_failure_message(ENOMEM, env, 4096),
               Catch::Contains("locked-memory limit, which is 64 KiB") && Catch::Contains("entries = 4096"));
    env.memlock_kib = -1;
    CHECK_THAT(setup_failure_message(ENOMEM, env, 4096), Catch::Contains("unlimited"));
}
