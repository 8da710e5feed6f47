// Child processes on the loop, as a deployment script would use them (asyncio's create_subprocess_exec):
//
//   subprocess
//
// 1. Runs four commands at once with process::run and prints what each wrote and how it exited: four one-second
//    sleeps take about one second in all, not four.
// 2. Talks to `sort` through pipes: writes lines to its stdin, closes it, reads the sorted lines back with
//    read_until.
// 3. Gives a command that would run for a minute a 200 ms timeout: it is stopped (SIGTERM, then SIGKILL) and reaped.
//
// No SIGCHLD handler is installed and no thread blocks in waitpid: each wait is an io_uring operation (IORING_OP_WAITID
// on Linux 6.7+, a poll of the child's pidfd before that, epoll where io_uring is refused).
#include <coring/coring.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

coring::task<> run_four() {
    const std::vector<std::vector<std::string>> commands = {
        {"/bin/sh", "-c", "sleep 1; echo slept one second"},
        {"/bin/sh", "-c", "sleep 1; uname -s"},
        {"/bin/sh", "-c", "sleep 1; echo to stderr >&2; exit 3"},
        {"/bin/sh", "-c", "sleep 1; echo $((6 * 7))"},
    };
    std::vector<coring::task<coring::process_result>> runs;
    for (const auto& argv : commands) runs.push_back(coring::process::run(argv));
    const auto start = std::chrono::steady_clock::now();
    std::vector<coring::process_result> results = co_await coring::gather(std::move(runs));
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (std::size_t i = 0; i < results.size(); ++i) {
        const auto& r = results[i];
        std::printf("  [%zu] exit %d, stdout %s, stderr %s\n", i, r.exit_code,
                    r.out.empty() ? "(empty)" : ("\"" + r.out.substr(0, r.out.size() - 1) + "\"").c_str(),
                    r.err.empty() ? "(empty)" : ("\"" + r.err.substr(0, r.err.size() - 1) + "\"").c_str());
    }
    std::printf("four one-second commands at once: %.2f s\n", took);
}

coring::task<> sort_through_pipes() {
    coring::process_options o;
    o.in = coring::stdio::pipe;
    o.out = coring::stdio::pipe;
    coring::process sorter = coring::process::spawn({"sort"}, o);
    for (const char* word : {"pear\n", "apple\n", "fig\n", "cherry\n"}) co_await sorter.stdin_stream().write_all(word);
    co_await sorter.stdin_stream().close(); // the end of sort's input: now it sorts and writes
    std::string sorted;
    for (;;) {
        std::string line = co_await sorter.stdout_stream().read_until("\n");
        if (line.empty()) break;
        line.pop_back();
        sorted += sorted.empty() ? line : ", " + line;
    }
    const int code = co_await sorter.wait();
    std::printf("sorted: %s (sort exited %d)\n", sorted.c_str(), code);
}

coring::task<> stop_a_slow_one() {
    coring::run_options o;
    o.timeout = 200ms;
    o.kill_grace = 200ms;
    const std::vector<std::string> slow = {"sleep", "60"};
    const auto start = std::chrono::steady_clock::now();
    try {
        (void)co_await coring::process::run(slow, o);
        std::printf("the slow command finished?\n");
    } catch (const coring::timeout_error&) {
        const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("`sleep 60` stopped by a 200 ms timeout after %.2f s\n", took);
    }
}

coring::task<> main_task() {
    co_await run_four();
    co_await sort_through_pipes();
    co_await stop_a_slow_one();
}

} // namespace

int main() {
    try {
        coring::run(main_task());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "subprocess: %s\n", e.what());
        return 1;
    }
}
