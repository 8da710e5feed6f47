#include <coring/coring.hpp>
#include <coring/detail/ring.hpp>

#include <catch2/catch.hpp>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace test_setup_errors {

namespace {

#if defined(__x86_64__)
constexpr unsigned audit_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned audit_arch = AUDIT_ARCH_AARCH64;
#else
constexpr unsigned audit_arch = 0;
#endif

/// Sleeps, then sends a few bytes through a socket pair and reads them back: ":ok" when they arrive intact.
coring::task<std::string> exchange_on_the_loop() {
    co_await coring::sleep(std::chrono::milliseconds(1));
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) co_return ":socketpair";
    coring::unix_stream a(fds[0]), b(fds[1]);
    co_await a.write_all("ping");
    char got[4] = {};
    co_await b.read_exact(std::as_writable_bytes(std::span(got)));
    co_return std::string_view(got, 4) == "ping" ? ":ok" : ":bad";
}

struct child_result {
    int code = -1;           // 0: a loop was made; an errno when construction threw std::system_error; -2 other
    std::string what;        // the exception's message, or the backend the loop ran on
    std::string stderr_text; // what the child wrote on stderr
};

/// Forks a child that installs a seccomp filter making io_uring_setup fail with `err` (as Docker's default profile
/// does with EPERM), then creates an event loop asking for backend `b` (CORING_BACKEND unset), runs a task on it that
/// sleeps and moves bytes through a socket pair, then makes a second loop; returns what happened and its stderr.
child_result construct_under_seccomp(int err, coring::backend b = coring::backend::io_uring) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        ::unsetenv("CORING_BACKEND");
        ::unsetenv("CORING_BACKEND_NOTICE");
        std::FILE* errfile = std::tmpfile();
        if (errfile) ::dup2(::fileno(errfile), STDERR_FILENO);
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
            out = "-1\x1f"
                  "could not install the seccomp filter";
        } else {
            try {
                coring::loop_options o;
                o.backend = b;
                std::string ran;
                {
                    coring::event_loop loop(o);
                    ran = coring::to_string(loop.backend());
                    ran += loop.run(exchange_on_the_loop());
                }
                {
                    coring::event_loop again(o); // a second loop: the notice is not repeated
                }
                out = "0\x1f" + ran;
            } catch (const std::system_error& e) {
                out = std::to_string(e.code().value()) + "\x1f" + e.what();
            } catch (const std::exception& e) {
                out = "-2\x1f" + std::string(e.what());
            }
        }
        std::fflush(stderr);
        out += '\x1f';
        if (errfile) {
            std::rewind(errfile);
            char buf[512];
            for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, errfile)) > 0;) out.append(buf, n);
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
    const auto bar = text.find('\x1f');
    const auto bar2 = text.find('\x1f', bar + 1);
    REQUIRE(bar != std::string::npos);
    REQUIRE(bar2 != std::string::npos);
    r.code = std::stoi(text.substr(0, bar));
    r.what = text.substr(bar + 1, bar2 - bar - 1);
    r.stderr_text = text.substr(bar2 + 1);
    return r;
}

} // namespace

TEST_CASE("setup errors - a seccomp filter refusing io_uring_setup: an automatic loop runs on epoll and says why once",
          "[loop][setup][backend]") {
    if (audit_arch == 0) return; // no seccomp arch constant for this CPU: nothing to test
    const child_result r = construct_under_seccomp(EPERM, coring::backend::automatic);
    INFO(r.what);
    INFO(r.stderr_text);
    REQUIRE(r.code == 0);
    CHECK(r.what == "epoll:ok");
    CHECK_THAT(r.stderr_text, Catch::StartsWith("coring: running on epoll instead of io_uring: "));
    CHECK_THAT(r.stderr_text, Catch::Contains("seccomp"));
    // Said once, for the first loop only, on one line.
    CHECK(std::count(r.stderr_text.begin(), r.stderr_text.end(), '\n') == 1);
}

TEST_CASE(
    "setup errors - a seccomp filter refusing io_uring_setup gives EPERM with the reason when io_uring is required",
    "[loop][setup][backend]") {
    if (audit_arch == 0) return; // no seccomp arch constant for this CPU: nothing to test
    const child_result r = construct_under_seccomp(EPERM, coring::backend::io_uring);
    INFO(r.what);
    REQUIRE(r.code == EPERM);
    CHECK_THAT(r.what, Catch::StartsWith("coring: cannot create an event loop: "));
    CHECK_THAT(r.what, Catch::Contains("seccomp"));
    CHECK_THAT(r.what, Catch::Contains("Docker"));
    const int disabled = coring::detail::read_sysctl_int("/proc/sys/kernel/io_uring_disabled");
    if (disabled == 0) CHECK_THAT(r.what, Catch::Contains("kernel.io_uring_disabled is 0"));
    CHECK_THAT(r.what, Catch::EndsWith("Operation not permitted"));
}

TEST_CASE("setup errors - a kernel without io_uring (ENOSYS) is named as such", "[loop][setup][backend]") {
    if (audit_arch == 0) return; // no seccomp arch constant for this CPU: nothing to test
    const child_result r = construct_under_seccomp(ENOSYS);
    INFO(r.what);
    REQUIRE(r.code == ENOSYS);
    CHECK_THAT(r.what, Catch::Contains("does not provide io_uring"));
    CHECK_THAT(r.what, Catch::Contains("CONFIG_IO_URING"));
    // Automatic: epoll, saying so.
    const child_result a = construct_under_seccomp(ENOSYS, coring::backend::automatic);
    INFO(a.what);
    REQUIRE(a.code == 0);
    CHECK(a.what == "epoll:ok");
    CHECK_THAT(a.stderr_text, Catch::Contains("does not provide io_uring"));
}

TEST_CASE("setup errors - running out of descriptors is an error even for an automatic loop, not a fallback",
          "[loop][setup][backend]") {
    if (audit_arch == 0) return; // no seccomp arch constant for this CPU: nothing to test
    const child_result r = construct_under_seccomp(EMFILE, coring::backend::automatic);
    INFO(r.what);
    REQUIRE(r.code == EMFILE);
    CHECK_THAT(r.what, Catch::Contains("no file descriptor is left for the ring"));
    CHECK(r.stderr_text.find("epoll") == std::string::npos);
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

} // namespace test_setup_errors
