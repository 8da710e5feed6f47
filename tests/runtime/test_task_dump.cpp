// Task dumps (event_loop::tasks(), dump_tasks) and the loop's gauges (event_loop::stats()).
#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace test_task_dump {

using namespace std::chrono_literals;
using coring::task;
using coring::task_info;
using coring::task_state;

namespace {

/// Everything written to `f` so far.
std::string read_all(std::FILE* f) {
    std::fflush(f);
    std::rewind(f);
    std::string text;
    char buf[512];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
    return text;
}

// The lines of this file where the tasks below wait (a dump names them).
unsigned line_of_sleep = 0;
unsigned line_of_gather = 0;
unsigned line_of_join = 0;
unsigned line_of_inner_await = 0;
unsigned line_of_read = 0;
unsigned line_of_pop = 0;
unsigned line_of_spawn = 0;

task<> sleeper() {
    line_of_sleep = __LINE__ + 1;
    co_await coring::sleep(10s);
}

task<> quick() { co_return; }

task<> gathering() {
    line_of_gather = __LINE__ + 1;
    co_await coring::gather(sleeper(), sleeper());
}

task<std::size_t> read_some(coring::stream& s) {
    char buf[16];
    line_of_read = __LINE__ + 1;
    const std::size_t n = co_await s.read(std::span<char>(buf, sizeof buf));
    co_return n;
}

task<std::size_t> reader_body(coring::stream& s) {
    line_of_inner_await = __LINE__ + 1;
    const std::size_t n = co_await read_some(s);
    co_return n;
}

task<> joiner(coring::join_handle<std::size_t>& h) {
    line_of_join = __LINE__ + 1;
    (void)co_await h;
}

task<> popper(coring::queue<int>& q) {
    line_of_pop = __LINE__ + 1;
    (void)co_await q.pop();
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

bool is_this_file(const coring::code_location& l) { return ends_with(l.file, "test_task_dump.cpp"); }

// Whether co_awaits are recorded (CORING_TASK_TRACE: on unless NDEBUG); without, the chains are empty.
constexpr bool traced = coring::detail::task_trace;

} // namespace

TEST_CASE("task dump - a task in a gather shows the gather and both children asleep", "[task_dump]") {
    coring::run([]() -> task<> {
        line_of_spawn = __LINE__ + 1;
        auto h = coring::spawn(gathering());
        co_await coring::sleep(20ms); // the gather and its children are waiting now
        const std::vector<task_info> ts = coring::event_loop::current().tasks();
        REQUIRE(ts.size() == 2); // this one (running) and the gathering task
        const task_info* me = nullptr;
        const task_info* g = nullptr;
        for (const task_info& t : ts) (t.state == task_state::running ? me : g) = &t;
        REQUIRE(me != nullptr);
        REQUIRE(g != nullptr);
        CHECK(g->id != 0);
        CHECK(g->id != me->id);
        CHECK(g->state == task_state::waiting);
        CHECK(is_this_file(g->spawned));
        CHECK(g->spawned.line == line_of_spawn);
        if constexpr (traced) {
            REQUIRE(g->awaits.size() == 1);
            CHECK(g->awaits[0].line == line_of_gather);
            CHECK(ends_with(g->awaits[0].function, "gathering"));
        } else {
            CHECK(g->awaits.empty());
        }
        CHECK(g->waiting_for == "gather of 2 tasks");
        REQUIRE(g->children.size() == 2);
        for (const task_info& c : g->children) {
            CHECK(c.id == 0);
            CHECK(c.state == task_state::waiting);
            if constexpr (traced) {
                REQUIRE(c.awaits.size() == 1);
                CHECK(c.awaits[0].line == line_of_sleep);
            }
            CHECK(c.waiting_for.rfind("sleep, due in ", 0) == 0);
        }
        // The text form names the same things.
        const std::string text = coring::format_tasks(ts);
        INFO(text);
        CHECK(text.find("task #" + std::to_string(g->id) + " (waiting) spawned at ") != std::string::npos);
        CHECK(text.find("waiting for gather of 2 tasks") != std::string::npos);
        CHECK(text.find("child task (waiting)") != std::string::npos);
        if constexpr (traced)
            CHECK(text.find("test_task_dump.cpp:" + std::to_string(line_of_sleep)) != std::string::npos);
        h.cancel();
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);
    }());
}

TEST_CASE("task dump - a join on a task reading a socket shows both chains down to the read", "[task_dump]") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    coring::run([](int fd, int peer) -> task<> {
        coring::unix_stream s(fd);
        auto reader = coring::spawn(reader_body(s));
        auto waiter = coring::spawn(joiner(reader));
        co_await coring::sleep(20ms);
        const std::vector<task_info> ts = coring::event_loop::current().tasks();
        REQUIRE(ts.size() == 3);
        // Newest first: the joiner, then the reader.
        const task_info& j = ts[0];
        const task_info& r = ts[1];
        CHECK(j.state == task_state::waiting);
        CHECK(j.waiting_for == "join task #" + std::to_string(r.id));
        CHECK(r.state == task_state::waiting);
        if constexpr (traced) {
            REQUIRE(j.awaits.size() == 1);
            CHECK(j.awaits[0].line == line_of_join);
            REQUIRE(r.awaits.size() == 2); // reader_body awaits read_some, which awaits the read
            CHECK(r.awaits[0].line == line_of_inner_await);
            CHECK(r.awaits[0].function.find("reader_body") != std::string::npos);
            CHECK(r.awaits[1].line == line_of_read);
            CHECK(r.awaits[1].function.find("read_some") != std::string::npos);
        }
        CHECK(!r.waiting_for.empty());
        // A Unix peer has no address to show; with CORING_MULTISHOT_STREAMS=1 the read waits on the stream's
        // multishot receive instead.
        CHECK((r.waiting_for == "read on fd " + std::to_string(fd) ||
               r.waiting_for == "stream read (multishot receive)"));
        // Once the peer writes, the read ends and so does the join: nothing is left but this task.
        REQUIRE(::write(peer, "x", 1) == 1);
        co_await waiter;
        const std::size_t got = co_await reader;
        CHECK(got == 1);
        const std::vector<task_info> after = coring::event_loop::current().tasks();
        REQUIRE(after.size() == 1);
        CHECK(after[0].state == task_state::running);
        ::close(peer);
    }(sv[0], sv[1]));
}

TEST_CASE("task dump - a task_group child blocked on a queue names the queue and where it was spawned", "[task_dump]") {
    coring::run([]() -> task<> {
        coring::queue<int> q;
        coring::task_group g;
        line_of_spawn = __LINE__ + 1;
        auto h = g.spawn(popper(q));
        auto fresh = coring::spawn(quick()); // spawned and not started yet: scheduled
        {
            const std::vector<task_info> ts = coring::event_loop::current().tasks();
            REQUIRE(ts.size() == 3);
            CHECK(ts[0].state == task_state::scheduled);
            CHECK(ts[0].awaits.empty());
            CHECK(ts[1].state == task_state::scheduled); // the group's child has not run yet either
        }
        co_await fresh;
        co_await coring::sleep(5ms);
        const std::vector<task_info> ts = coring::event_loop::current().tasks();
        REQUIRE(ts.size() == 2);
        const task_info& c = ts[0];
        CHECK(c.state == task_state::waiting);
        CHECK(c.waiting_for == "queue::pop");
        CHECK(c.spawned.line == line_of_spawn);
        INFO(c.spawned.function);
        CHECK((c.spawned.function.find("lambda") != std::string::npos ||
               c.spawned.function.find("operator()") != std::string::npos));
        if constexpr (traced) {
            REQUIRE(c.awaits.size() == 1);
            CHECK(c.awaits[0].line == line_of_pop);
        }
        CHECK(q.try_push(1));
        co_await g.join();
    }());
}

TEST_CASE("task dump - dump_tasks prints a header and every task", "[task_dump]") {
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    coring::run([](std::FILE* out) -> task<> {
        auto h = coring::spawn(sleeper());
        co_await coring::sleep(5ms);
        coring::dump_tasks(out);
        h.cancel();
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);
    }(f));
    const std::string text = read_all(f);
    std::fclose(f);
    INFO(text);
    CHECK(text.rfind("coring: 2 tasks\n", 0) == 0);
    CHECK(text.find("(running)") != std::string::npos);
    CHECK(text.find("(waiting)") != std::string::npos);
    CHECK(text.find("waiting for sleep, due in ") != std::string::npos);
    if constexpr (traced)
        CHECK(text.find("sleeper\n") != std::string::npos); // the coroutine's name, without GCC's parameter list
}

TEST_CASE("task dump - dump_tasks without a loop is a logic_error", "[task_dump]") {
    CHECK_THROWS_AS(coring::dump_tasks(stderr), std::logic_error);
}

TEST_CASE("task dump - a dump_on_signal that names no usable signal is refused when the loop is made", "[task_dump]") {
    for (int bad : {-1, SIGKILL, SIGSTOP, 100000}) {
        coring::loop_options o;
        o.dump_on_signal = bad;
        CHECK_THROWS_AS(coring::event_loop(o), std::invalid_argument);
    }
}

TEST_CASE("loop stats - the gauges count what stands now", "[task_dump][stats]") {
    coring::event_loop loop;
    loop.run([]() -> task<> {
        coring::event_loop& l = coring::event_loop::current();
        const coring::loop_stats before = l.stats();
        CHECK(before.tasks == 1); // this one
        CHECK(before.timers == 0);
        CHECK(before.remote_pending == 0);
        auto a = coring::spawn(sleeper());
        auto b = coring::spawn(sleeper());
        CHECK(l.stats().tasks == 3);
        CHECK(l.stats().ready == 2); // spawned, not started
        co_await coring::yield_now();
        co_await coring::yield_now();
        const coring::loop_stats s = l.stats();
        CHECK(s.timers == 2);
        CHECK(s.ready == 0);
        CHECK(s.turns > before.turns);
        a.cancel();
        b.cancel();
        CHECK(l.stats().timers == 0); // cancelled sleepers leave the timer queue at once
        CHECK_THROWS_AS(co_await a, coring::cancelled_error);
        CHECK_THROWS_AS(co_await b, coring::cancelled_error);
        // A job that runs until told to stop: it is surely out while the gauge is read.
        auto release = std::make_shared<std::atomic<bool>>(false);
        auto job = coring::spawn(coring::to_thread([release] {
            while (!release->load()) std::this_thread::sleep_for(1ms);
        }));
        co_await coring::yield_now(); // the job's task submits it
        CHECK(l.stats().remote_pending == 1);
        release->store(true);
        co_await job;
        CHECK(l.stats().remote_pending == 0);
        CHECK(l.stats().tasks == 1);
    }());
}

TEST_CASE("task dump - loop_options::dump_on_signal prints a dump on the signal and the loop goes on",
          "[task_dump][signal]") {
    // The dump goes to stderr: catch it in a file for the duration (restored however the test ends).
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    std::fflush(stderr);
    struct stderr_redirect {
        int saved = ::dup(2);
        explicit stderr_redirect(std::FILE* to) { ::dup2(::fileno(to), 2); }
        ~stderr_redirect() {
            std::fflush(stderr);
            ::dup2(saved, 2);
            ::close(saved);
        }
    };
    coring::loop_options o;
    o.dump_on_signal = SIGUSR2;
    int after = 0;
    {
        stderr_redirect redirect(f);
        REQUIRE(redirect.saved >= 0);
        coring::run(
            [](int& after, int out) -> task<> {
                auto h = coring::spawn(sleeper());
                co_await coring::sleep(5ms);
                ::raise(SIGUSR2); // to this thread, where the watcher's wait blocked it: it queues for the signalfd
                // Until the dump is out (bounded: a slow machine takes a turn or two, not seconds).
                for (int i = 0; i < 2000; ++i) {
                    struct stat st {};
                    if (::fstat(out, &st) == 0 && st.st_size > 0) break;
                    co_await coring::sleep(5ms);
                }
                after = 1; // the loop went on
                h.cancel();
                CHECK_THROWS_AS(co_await h, coring::cancelled_error);
            }(after, ::fileno(f)),
            o);
    }
    const std::string text = read_all(f);
    std::fclose(f);
    INFO(text);
    CHECK(after == 1);
    CHECK(text.find("coring: 3 tasks\n") != std::string::npos); // main, the sleeper and the watcher
    CHECK(text.find("waiting for sleep, due in ") != std::string::npos);
    CHECK(text.find("(running)") != std::string::npos); // the watcher: it prints the dump
    if constexpr (traced) CHECK(text.find("dump_tasks_on") != std::string::npos);
}

} // namespace test_task_dump
