// Child processes: echo through cat, 64 MiB on stdout and stderr at once, timeouts that kill, children that exit
// before their output is read, 200 at once; no descriptor and no zombie left behind.
#include "support/helpers.hpp"
#include "support/temp_dir.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

namespace test_process {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// Whether this process has any child left, running or zombie (waitid without reaping anything).
bool has_children() {
    siginfo_t si{};
    return ::waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0;
}

std::vector<std::string> sh(std::string script) { return {"/bin/sh", "-c", std::move(script)}; }

/// Every run over io_uring's own waits (IORING_OP_WAITID where the kernel has it) and over the pidfd poll that older
/// kernels use.
std::vector<coring_test::named_setup> wait_setups() {
    std::vector<coring_test::named_setup> v;
    v.push_back({"default", {}});
    coring::loop_options poll;
    poll.unsupported_opcodes = {coring::detail::op_waitid};
    v.push_back({"pidfd-poll", poll});
    return v;
}

} // namespace

TEST_CASE("process - lines echoed through cat come back in order, then its exit code", "[process]") {
    const int fds = coring_test::open_fds();
    for (const auto& setup : wait_setups()) {
        INFO(setup.name);
        std::vector<std::string> got;
        int code = -100;
        coring::event_loop loop(setup.options);
        loop.run([&]() -> task<> {
            coring::process_options o;
            o.in = coring::stdio::pipe;
            o.out = coring::stdio::pipe;
            coring::process p = coring::process::spawn({"cat"}, o);
            for (int i = 0; i < 100; ++i) {
                co_await p.stdin_stream().write_all("line " + std::to_string(i) + "\n");
                got.push_back(co_await p.stdout_stream().read_until("\n"));
            }
            co_await p.stdin_stream().close();
            const std::string rest = co_await p.stdout_stream().read_until("\n");
            got.push_back(rest);
            code = co_await p.wait();
        }());
        REQUIRE(got.size() == 101);
        CHECK(got[0] == "line 0\n");
        CHECK(got[99] == "line 99\n");
        CHECK(got[100].empty());
        CHECK(code == 0);
    }
    CHECK(coring_test::open_fds() == fds);
    CHECK_FALSE(has_children());
}

TEST_CASE("process - run gives the exit code, stdout and stderr, and feeds input", "[process]") {
    coring::process_result a, b, c;
    coring::run([&]() -> task<> {
        a = co_await coring::process::run(sh("echo out; echo err >&2; exit 3"));
        coring::run_options o;
        o.input = "hello\nworld\n";
        const std::vector<std::string> wc{"wc", "-l"}; // a braced list inside co_await: GCC 12 rejects it
        b = co_await coring::process::run(wc, o);
        coring::run_options m;
        m.merge_stderr = true;
        c = co_await coring::process::run(sh("echo one; echo two >&2"), m);
    }());
    CHECK(a.exit_code == 3);
    CHECK(a.out == "out\n");
    CHECK(a.err == "err\n");
    CHECK(b.exit_code == 0);
    CHECK(b.out == "2\n");
    CHECK(c.out == "one\ntwo\n");
    CHECK(c.err.empty());
    CHECK_FALSE(has_children());
}

TEST_CASE("process - 64 MiB on stdout and on stderr at once arrive whole", "[process]") {
    // Both streams fill their pipes long before the end: a parent that read one then the other would deadlock.
    const int fds = coring_test::open_fds();
    coring::process_result r;
    coring::run([&]() -> task<> {
        const std::vector<std::string> argv{"python3", "-c",
                                            "import sys\n"
                                            "o, e = sys.stdout.buffer, sys.stderr.buffer\n"
                                            "for i in range(1024):\n"
                                            "    o.write(bytes([i % 251]) * 65536)\n"
                                            "    e.write(bytes([i % 241]) * 65536)\n"};
        r = co_await coring::process::run(argv);
    }());
    REQUIRE(r.exit_code == 0);
    REQUIRE(r.out.size() == 64u << 20);
    REQUIRE(r.err.size() == 64u << 20);
    bool same = true;
    for (std::size_t i = 0; i < r.out.size(); i += 4093) {
        const std::size_t block = i / 65536;
        same = same && static_cast<unsigned char>(r.out[i]) == block % 251 &&
               static_cast<unsigned char>(r.err[i]) == block % 241;
    }
    CHECK(same);
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("process - a timeout stops a child that ignores SIGTERM with SIGKILL, reaped", "[process][timeout]") {
    // `exec sleep`: one process, which keeps ignoring SIGTERM across the exec; no grandchild holds the pipes.
    const std::vector<std::string> stubborn = sh("trap '' TERM; echo started; exec sleep 30");
    bool timed_out = false;
    double took = 0;
    int stopped = 0;
    std::string first;
    coring::run([&]() -> task<> {
        coring::run_options o;
        o.timeout = 1s; // the shell has long set its trap by then, even under emulation
        o.kill_grace = 300ms;
        coring_test::stopwatch sw;
        try {
            (void)co_await coring::process::run(stubborn, o);
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        took = sw.seconds();
        // stop() directly: SIGTERM is ignored, SIGKILL after the grace period ends it.
        coring::process_options po;
        po.out = coring::stdio::pipe;
        coring::process p = coring::process::spawn(stubborn, po);
        first = co_await p.stdout_stream().read_until("\n");
        stopped = co_await p.stop(100ms);
    }());
    CHECK(timed_out);
    CHECK(took >= 1.25);
    CHECK(took < 20);
    CHECK(first == "started\n");
    CHECK(stopped == -SIGKILL);
    CHECK_FALSE(has_children());
}

TEST_CASE("process - a child that exited before its output is read: the output is all there", "[process]") {
    int code = -100;
    std::string out;
    coring::run([&]() -> task<> {
        coring::process_options o;
        o.out = coring::stdio::pipe;
        coring::process p = coring::process::spawn(sh("echo first; echo second; exit 7"), o);
        code = co_await p.wait();
        CHECK(p.returncode() == 7);
        for (;;) {
            std::string line = co_await p.stdout_stream().read_until("\n");
            if (line.empty()) break;
            out += line;
        }
        // A second wait returns the same code at once.
        const int again = co_await p.wait();
        CHECK(again == 7);
    }());
    CHECK(code == 7);
    CHECK(out == "first\nsecond\n");
}

TEST_CASE("process - 200 children at once, then no descriptor and no zombie left", "[process][many]") {
    const int fds = coring_test::open_fds();
    int ok = 0;
    coring::run([&]() -> task<> {
        std::vector<task<coring::process_result>> all;
        for (int i = 0; i < 200; ++i) all.push_back(coring::process::run(sh("echo " + std::to_string(i))));
        std::vector<coring::process_result> results = co_await coring::gather(std::move(all));
        for (std::size_t i = 0; i < results.size(); ++i)
            if (results[i].exit_code == 0 && results[i].out == std::to_string(i) + "\n") ++ok;
    }());
    CHECK(ok == 200);
    CHECK(coring_test::open_fds() == fds);
    CHECK_FALSE(has_children());
}

TEST_CASE("process - kill, signals in the exit code, and a destroyed process object kills and reaps", "[process]") {
    int code = 0;
    bool sent_after = true;
    coring::run([&]() -> task<> {
        coring::process p = coring::process::spawn({"sleep", "30"});
        CHECK(p.pid() > 0);
        CHECK(p.terminate());
        code = co_await p.wait();
        sent_after = p.kill();
        { coring::process q = coring::process::spawn({"sleep", "30"}); }
    }());
    CHECK(code == -SIGTERM);
    CHECK_FALSE(sent_after);
    CHECK_FALSE(has_children());
}

TEST_CASE("process - a cancelled wait leaves the child running, a cancelled run kills it", "[process][cancel]") {
    bool wait_cancelled = false;
    bool run_cancelled = false;
    int code = 0;
    coring::run([&]() -> task<> {
        coring::process p = coring::process::spawn({"sleep", "30"});
        try {
            (void)co_await coring::timeout(50ms, p.wait());
        } catch (const coring::timeout_error&) {
            wait_cancelled = true;
        }
        CHECK(p.kill(SIGKILL));
        code = co_await p.wait();
        auto h = coring::spawn(coring::process::run({"sleep", "30"}));
        co_await coring::sleep(50ms);
        h.cancel();
        try {
            (void)co_await h;
        } catch (const coring::cancelled_error&) {
            run_cancelled = true;
        }
    }());
    CHECK(wait_cancelled);
    CHECK(code == -SIGKILL);
    CHECK(run_cancelled);
    CHECK_FALSE(has_children());
}

TEST_CASE("process - cwd and environment", "[process]") {
    coring_test::temp_dir dir;
    coring::process_result r;
    coring::run([&]() -> task<> {
        coring::run_options o;
        o.cwd = dir.path();
        o.env = std::vector<std::string>{"CORING_TEST_VALUE=forty two", "PATH=/usr/bin:/bin"};
        r = co_await coring::process::run(sh("pwd -P; echo \"$CORING_TEST_VALUE\"; echo \"${HOME:-no home}\""), o);
    }());
    const std::string where = std::filesystem::canonical(dir.path()).string();
    CHECK(r.out == where + "\nforty two\nno home\n");
}

TEST_CASE("process - a program named without a slash is searched in the given environment's PATH", "[process]") {
    // Two directories with a program of the same name, only one executable, and neither on the parent's PATH: the
    // child's PATH decides, as in Python's subprocess.
    coring_test::temp_dir dir;
    const std::string denied = dir / "denied";
    const std::string allowed = dir / "allowed";
    std::filesystem::create_directories(denied);
    std::filesystem::create_directories(allowed);
    auto write_script = [](const std::string& path, const char* text, std::filesystem::perms mode) {
        std::ofstream(path) << text;
        std::filesystem::permissions(path, mode);
    };
    using p = std::filesystem::perms;
    write_script(denied + "/coring-path-probe", "#!/bin/sh\necho wrong\n", p::owner_read | p::owner_write);
    write_script(allowed + "/coring-path-probe", "#!/bin/sh\necho \"found $1\"\n", p::owner_all);
    coring::process_result found, via_sh;
    std::string missing_error, denied_error;
    coring::run([&]() -> task<> {
        const std::vector<std::string> probe{"coring-path-probe"};
        coring::run_options o;
        o.env = std::vector<std::string>{"PATH=" + denied + ":" + allowed};
        const std::vector<std::string> probe_it{"coring-path-probe", "it"};
        found = co_await coring::process::run(probe_it, o);
        try {
            coring::run_options none;
            none.env = std::vector<std::string>{"NOT_PATH=1"}; // no PATH: /bin:/usr/bin, where it is not
            (void)co_await coring::process::run(probe, none);
        } catch (const std::system_error& e) {
            missing_error = e.what();
        }
        try {
            coring::run_options deny;
            deny.env = std::vector<std::string>{"PATH=" + denied};
            (void)co_await coring::process::run(probe, deny);
        } catch (const std::system_error& e) {
            denied_error = e.what();
        }
        coring::run_options plain; // system programs as before
        plain.env = std::vector<std::string>{"PATH=/usr/bin:/bin"};
        via_sh = co_await coring::process::run(sh("echo via-sh"), plain);
    }());
    CHECK(found.exit_code == 0);
    CHECK(found.out == "found it\n");
    CHECK(coring_test::contains(missing_error, "coring-path-probe"));
    CHECK(coring_test::contains(missing_error, "No such file"));
    CHECK(coring_test::contains(denied_error, "Permission denied"));
    CHECK(via_sh.out == "via-sh\n");
    CHECK_FALSE(has_children());
}

TEST_CASE("process - without a pidfd, waits look with waitid on a timer: codes, kill, cancellation", "[process]") {
    coring::detail::refuse_pidfd_for_tests = true;
    int code = 0, killed = 0;
    bool cancelled = false;
    coring::process_result r;
    coring::run([&]() -> task<> {
        r = co_await coring::process::run(sh("echo fallback; exit 5"));
        coring::process p = coring::process::spawn({"sleep", "30"});
        try {
            (void)co_await coring::timeout(30ms, p.wait());
        } catch (const coring::timeout_error&) {
            cancelled = true;
        }
        CHECK(p.kill(SIGTERM));
        killed = co_await p.wait();
        coring::process q = coring::process::spawn({"true"});
        code = co_await q.wait();
        { coring::process dropped = coring::process::spawn({"sleep", "30"}); }
    }());
    coring::detail::refuse_pidfd_for_tests = false;
    CHECK(r.exit_code == 5);
    CHECK(r.out == "fallback\n");
    CHECK(cancelled);
    CHECK(killed == -SIGTERM);
    CHECK(code == 0);
    CHECK_FALSE(has_children());
}

TEST_CASE("process - a child reaped by someone else (SIGCHLD ignored) is ECHILD, not a hang", "[process]") {
    struct sigaction ignore {
    }, old{};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGCHLD, &ignore, &old);
    int err = 0;
    coring::run([&]() -> task<> {
        coring::process p = coring::process::spawn({"true"});
        try {
            (void)co_await p.wait();
        } catch (const std::system_error& e) {
            err = e.code().value();
        }
    }());
    ::sigaction(SIGCHLD, &old, nullptr);
    CHECK(err == ECHILD);
    CHECK_FALSE(has_children());
}

TEST_CASE("process - bad programs and options are clear exceptions, leaking nothing", "[process]") {
    const int fds = coring_test::open_fds();
    coring::run([&]() -> task<> {
        coring::process_options o;
        o.in = o.out = o.err = coring::stdio::pipe;
        CHECK_THROWS_WITH(coring::process::spawn({"/nonexistent/program"}, o),
                          Catch::Contains("/nonexistent/program") && Catch::Contains("No such file"));
        CHECK_THROWS_WITH(coring::process::spawn({"no-such-program-coring"}, o), Catch::Contains("no-such-program"));
        CHECK_THROWS_AS(coring::process::spawn({}), std::invalid_argument);
        coring::process_options bad;
        bad.out = coring::stdio::to_stdout;
        CHECK_THROWS_AS(coring::process::spawn({"true"}, bad), std::invalid_argument);
        coring::process_options nowhere;
        nowhere.cwd = "/nonexistent/dir";
        CHECK_THROWS_WITH(coring::process::spawn({"true"}, nowhere), Catch::Contains("working directory /nonexistent"));
        coring::process p = coring::process::spawn({"true"});
        CHECK_THROWS_AS(p.stdout_stream(), std::logic_error);
        (void)co_await p.wait();
    }());
    CHECK(coring_test::open_fds() == fds);
    CHECK_FALSE(has_children());
}

TEST_CASE("process - writing to a child that stopped reading is EPIPE, not SIGPIPE", "[process]") {
    int err = 0;
    coring::run([&]() -> task<> {
        coring::process_options o;
        o.in = coring::stdio::pipe;
        coring::process p = coring::process::spawn({"true"}, o);
        (void)co_await p.wait();
        const std::string chunk(1 << 16, 'x');
        auto failure = co_await coring_test::failure_of(p.stdin_stream().write_all(chunk));
        err = failure.code;
    }());
    CHECK(err == EPIPE);
    sigset_t pending;
    ::sigpending(&pending);
    CHECK(::sigismember(&pending, SIGPIPE) == 0);
}

TEST_CASE("process - the child inherits no descriptor of the parent", "[process]") {
    const int leak = ::open("/dev/null", O_RDONLY); // no O_CLOEXEC on purpose
    REQUIRE(leak >= 0);
    coring::process_result r;
    coring::run([&]() -> task<> { r = co_await coring::process::run(sh("ls /proc/self/fd")); }());
    ::close(leak);
    // 0, 1, 2 and the descriptor ls opens to read the directory.
    CHECK(r.out == "0\n1\n2\n3\n");
}

} // namespace test_process
