// Network faults: peers that reset, hang up mid-write, refuse, never answer, or exhaust the server's descriptors.

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace test_faults {

using namespace std::chrono_literals;
using coring::address;
using coring::task;
using coring_test::failure_of;
using coring_test::io_failure;

namespace {

/// Runs `body(family)` for TCP over IPv4 and, where the machine has it, IPv6: resets (SO_LINGER {1, 0}) and refused
/// ports are TCP notions.
template <class Body>
void for_each_tcp_family(Body&& body) {
    SECTION("tcp-v4") { body(coring_test::tcp_v4{}); }
    SECTION("tcp-v6") {
        if (coring_test::ipv6_available()) body(coring_test::tcp_v6{});
        else WARN("no IPv6 loopback on this machine: the IPv6 case is skipped");
    }
}

/// Waits (blocking, at most 5 s) until `fd` reports an error or hang-up, i.e. the peer's reset has arrived, so that
/// an operation started afterwards meets a connection that is already dead rather than racing the reset.
bool wait_for_hangup(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 5000) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}

// ---- peer resets ----------------------------------------------------------------------------------------------------

template <class F>
task<> reset_during_and_before_reads(F fam) {
    {
        // A read that is waiting when the reset arrives.
        auto [c, s] = co_await coring_test::connect_pair(fam);
        const std::string peer = c.peer_address().to_string();
        char buf[64];
        auto reader = coring::spawn(failure_of(c.read(std::span(buf))));
        co_await coring::sleep(10ms);
        CHECK_FALSE(reader.done());
        coring_test::reset_on_close(s.native_handle());
        co_await s.close();
        const io_failure pending = co_await reader;
        INFO(pending.what);
        CHECK(pending.code == ECONNRESET);
        CHECK_THAT(pending.what, Catch::Contains("recv from " + peer));
        CHECK_THAT(pending.what, Catch::Contains("reset"));
        // Linux reports the reset once; the stream then reads as ended, and never hangs.
        const std::size_t after = co_await coring::timeout(5s, c.read(std::span(buf)));
        CHECK(after == 0);
        co_await c.close();
    }
    {
        // A read started after the reset arrived, through the read-ahead buffer (read_until).
        auto [c, s] = co_await coring_test::connect_pair(fam);
        const std::string peer = c.peer_address().to_string();
        coring_test::reset_on_close(s.native_handle());
        co_await s.close();
        REQUIRE(wait_for_hangup(c.native_handle()));
        const io_failure later = co_await failure_of(c.read_until('\n'));
        INFO(later.what);
        CHECK(later.code == ECONNRESET);
        CHECK_THAT(later.what, Catch::Contains("recv from " + peer));
        co_await c.close();
    }
    {
        // read_exact waiting for 10 bytes gets 5, then the reset: the error, and the 5 bytes stay in the stream.
        auto [c, s] = co_await coring_test::connect_pair(fam);
        char buf[10];
        auto reader = coring::spawn(failure_of(c.read_exact(std::span(buf))));
        co_await s.write_all("12345");
        co_await coring::sleep(10ms);
        CHECK_FALSE(reader.done());
        coring_test::reset_on_close(s.native_handle());
        co_await s.close();
        const io_failure partial = co_await reader;
        INFO(partial.what);
        CHECK(partial.code == ECONNRESET);
        CHECK(c.buffered() == 5);
        const std::size_t n = co_await c.read(std::span(buf));
        CHECK(std::string(buf, n) == "12345");
        co_await c.close();
    }
}

template <class F>
task<> write_to_reset_peer(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    const std::string peer = c.peer_address().to_string();
    co_await c.write_all("before the reset");
    coring_test::reset_on_close(s.native_handle());
    co_await s.close();
    REQUIRE(wait_for_hangup(c.native_handle()));
    // The first send after the reset reports it (ECONNRESET); the ones after that find the connection shut (EPIPE).
    // Without MSG_NOSIGNAL either would be a SIGPIPE, which at its default action ends this binary right here.
    for (int attempt = 0; attempt < 3; ++attempt) {
        const std::string data(1000, 'x');
        const io_failure f = co_await failure_of(c.write_all(data));
        INFO("attempt " << attempt << ": " << f.what);
        CHECK((f.code == EPIPE || f.code == ECONNRESET));
        CHECK_THAT(f.what, Catch::Contains("send to " + peer));
    }
    CHECK(c.is_open());
    co_await c.close();
    CHECK_FALSE(c.is_open());
}

/// Writes `data` with write_all and returns how it failed (code 0: it did not).
task<io_failure> write_all_outcome(coring::stream& out, const std::string& data) {
    co_return co_await failure_of(out.write_all(data));
}

template <class F>
task<> peer_closes_during_big_write(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    coring_test::small_buffers(c);
    coring_test::small_buffers(s);
    const std::string big(32 << 20, 'b');
    auto writer = coring::spawn(write_all_outcome(c, big));
    // The peer takes a little, then goes away with the rest of the 32 MiB unread.
    std::string head(64 * 1024, '\0');
    co_await s.read_exact(std::span(head));
    CHECK(head == big.substr(0, head.size()));
    CHECK_FALSE(writer.done());
    co_await s.close();
    // Bounded: a write that hangs instead of failing would fail here, not at CTest's timeout.
    const io_failure f = co_await coring::timeout(5s, writer);
    INFO(f.what);
    CHECK((f.code == EPIPE || f.code == ECONNRESET));
    CHECK_THAT(f.what, Catch::Contains("send to"));
    CHECK(c.is_open());
    co_await c.close();
    CHECK_FALSE(c.is_open());
}

// ---- refused, silent ------------------------------------------------------------------------------------------------

template <class F>
task<> refused(F) {
    address gone;
    {
        coring_test::test_server<F> srv;
        gone = srv.address();
    } // closed: nobody listens on that port now
    const io_failure f = co_await failure_of(coring::tcp_stream::connect(gone));
    INFO(f.what);
    CHECK(f.code == ECONNREFUSED);
    CHECK_THAT(f.what, Catch::Contains("connect " + gone.to_string()));
    CHECK_THAT(f.what, Catch::Contains("refused"));
}

template <class F>
task<> unix_refused(F) {
    coring_test::test_server<F> srv;
    const address at = srv.address();
    // A socket file left behind by a closed listener refuses; so does an abstract name nobody holds any more.
    srv.listener().close();
    const io_failure f = co_await failure_of(coring::unix_stream::connect(at));
    INFO(f.what);
    CHECK(f.code == ECONNREFUSED);
    CHECK_THAT(f.what, Catch::Contains("connect " + at.to_string()));
}

template <class F>
task<> silent_peer(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    char buf[16];
    CHECK_THROWS_AS(co_await coring::timeout(30ms, c.read(std::span(buf))), coring::timeout_error);
    // A peer that sends half a line and stalls: the half stays buffered across the timeout.
    co_await s.write_all("partial ");
    CHECK_THROWS_AS(co_await coring::timeout(30ms, c.read_until('\n')), coring::timeout_error);
    co_await s.write_all("line\n");
    const std::string line = co_await coring::timeout(5s, c.read_until('\n'));
    CHECK(line == "partial line\n");
    co_await s.write_all("12345");
    CHECK_THROWS_AS(co_await coring::timeout(30ms, c.read_exact(std::span(buf))), coring::timeout_error);
    CHECK(c.buffered() == 5);
    // The stream still works both ways.
    CHECK(c.is_open());
    co_await s.write_all("67890abcdefghijk");
    co_await c.read_exact(std::span(buf));
    CHECK(std::string(buf, 16) == "1234567890abcdef");
    co_await c.write_all("pong");
    char back[4];
    co_await s.read_exact(std::span(back));
    CHECK(std::string(back, 4) == "pong");
}

// ---- a listener under resets ----------------------------------------------------------------------------------------

struct accept_stats {
    int accepted = 0;
    int resets = 0; // connections whose first read failed with ECONNRESET
    int ended = 0;  // connections that read as ended
    int echoed = 0; // lines echoed
    int other = 0;  // any other error
    std::string other_what;
};

task<> echo_lines(coring::tcp_stream s, accept_stats& st) {
    try {
        for (;;) {
            const std::string line = co_await s.read_until('\n');
            if (line.empty()) {
                ++st.ended;
                break;
            }
            co_await s.write_all(line);
            ++st.echoed;
        }
    } catch (const std::system_error& e) {
        if (e.code().value() == ECONNRESET) {
            ++st.resets;
        } else {
            ++st.other;
            st.other_what = e.what();
        }
    }
    co_await s.close();
}

task<> accept_n(coring::tcp_listener& l, int n, accept_stats& st) {
    coring::task_group conns;
    for (int i = 0; i < n; ++i) {
        coring::tcp_stream s = co_await l.accept();
        ++st.accepted;
        conns.spawn(echo_lines(std::move(s), st));
    }
    co_await conns.join();
}

template <class F>
task<> connect_and_reset(const coring_test::test_server<F>& srv) {
    auto c = co_await srv.connect();
    coring_test::reset_on_close(c.native_handle());
    co_await c.close();
}

template <class F>
task<> accept_after_resets(F) {
    constexpr int early = 20, during = 20;
    coring_test::test_server<F> srv;
    // These wait in the accept queue already reset before the first accept.
    for (int i = 0; i < early; ++i) co_await connect_and_reset(srv);
    accept_stats st;
    auto server = coring::spawn(accept_n(srv.listener(), early + during + 1, st));
    // These reset while accepts are in flight, in every interleaving the scheduler gives.
    for (int i = 0; i < during; ++i) {
        co_await connect_and_reset(srv);
        if (i % 3 == 0) co_await coring::yield_now();
    }
    // A well-behaved client is still served.
    auto good = co_await srv.connect();
    co_await good.write_all("still serving\n");
    const std::string back = co_await coring::timeout(5s, good.read_until('\n'));
    CHECK(back == "still serving\n");
    co_await good.close();
    co_await coring::timeout(5s, server);
    INFO(st.other_what);
    CHECK(st.accepted == early + during + 1);
    CHECK(st.echoed == 1);
    CHECK(st.resets + st.ended == early + during + 1);
    CHECK(st.resets >= early);
    CHECK(st.other == 0);
}

// ---- EMFILE storm ---------------------------------------------------------------------------------------------------

/// User plus system CPU time of process `pid` so far, in seconds (all its threads, io_uring's workers included);
/// negative when /proc cannot tell.
double cpu_seconds(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    const std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const std::size_t close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) return -1;
    std::istringstream fields(stat.substr(close_paren + 1));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    // Field 3 (state) comes first after the command name; utime and stime are fields 14 and 15.
    for (int i = 3; i <= 15 && fields >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

/// Open descriptors of process `pid`.
int fds_of(pid_t pid) {
    int n = 0;
    if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
        while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
        ::closedir(d);
    }
    return n;
}

/// Echoes one connection of the storm server until it ends or fails; errors are expected and not reported.
task<> echo_quietly(coring::tcp_stream s) {
    char buf[4096];
    try {
        for (;;) {
            const std::size_t n = co_await s.read(std::span(buf));
            if (n == 0) break;
            co_await s.write_all(std::string_view(buf, n));
        }
    } catch (const std::system_error&) {}
    co_await s.close();
}

task<> accept_forever(coring::tcp_listener& l) {
    coring::task_group conns;
    try {
        for (;;) conns.spawn(echo_quietly(co_await l.accept()));
    } catch (const coring::cancelled_error&) {
        // Stopping: the join below ends the connections (no co_await inside a catch block).
    }
    co_await conns.join();
}

/// The forked server: listens on 127.0.0.1:0, reports the port, echoes until SIGTERM; 0 when SIGTERM stopped it.
task<int> storm_server(int report_fd) {
    auto stop = coring::wait_signal(SIGTERM); // blocked before the parent learns the port and may send it
    auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
    const std::uint16_t port = l.local_address().port();
    const bool reported = coring_test::write_full(report_fd, &port, sizeof port);
    ::close(report_fd);
    if (!reported) co_return 2;
    auto first = co_await coring::when_any(accept_forever(l), stop);
    co_return first.index() == 1 ? 0 : 3;
}

/// A blocking IPv4 client socket connected to 127.0.0.1:port, or -1.
int connect_blocking(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

/// Sends `text` on a blocking socket and reads the same number of bytes back within 5 s.
std::string round_trip(int fd, const std::string& text) {
    if (::send(fd, text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size())) return "(send failed)";
    std::string back(text.size(), '\0');
    if (!coring_test::read_full(fd, back.data(), back.size(), 5000ms)) return "(no answer)";
    return back;
}

/// Everything left in a pipe whose writer has exited.
std::string drain_pipe(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 1000) != 1) break;
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

} // namespace

TEST_CASE("faults - a peer reset ends a pending read and a later read with ECONNRESET naming the peer",
          "[net][faults]") {
    const coring_test::default_sigpipe sigpipe;
    const int fds = coring_test::open_fds();
    for_each_tcp_family([](auto fam) { coring::run(reset_during_and_before_reads(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("faults - write_all to a peer that reset fails with EPIPE or ECONNRESET and the process survives",
          "[net][faults]") {
    const coring_test::default_sigpipe sigpipe;
    const int fds = coring_test::open_fds();
    for_each_tcp_family([](auto fam) { coring::run(write_to_reset_peer(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("faults - the peer closes during a 32 MiB write_all: EPIPE or ECONNRESET, then close works",
          "[net][faults]") {
    const coring_test::default_sigpipe sigpipe;
    const int fds = coring_test::open_fds();
    coring_test::for_each_family([](auto fam) { coring::run(peer_closes_during_big_write(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("faults - connecting where nobody listens is ECONNREFUSED naming the address, or the host and port",
          "[net][faults]") {
    const int fds = coring_test::open_fds();
    for_each_tcp_family([](auto fam) { coring::run(refused(fam)); });
    SECTION("by host name") {
        coring::run([]() -> task<> {
            std::uint16_t port = 0;
            {
                auto l = coring::tcp_listener::bind(address::parse("127.0.0.1:0"));
                port = l.local_address().port();
            }
            const io_failure f = co_await failure_of(coring::tcp_stream::connect("localhost", port));
            INFO(f.what);
            CHECK(f.code == ECONNREFUSED);
            CHECK_THAT(f.what, Catch::Contains("localhost:" + std::to_string(port)));
        }());
    }
    SECTION("unix") { coring::run(unix_refused(coring_test::unix_path{})); }
    SECTION("unix-abstract") { coring::run(unix_refused(coring_test::unix_abstract{})); }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("faults - a peer that never answers: reads under timeout give timeout_error, the stream still works",
          "[net][faults]") {
    const int fds = coring_test::open_fds();
    coring_test::for_each_family([](auto fam) { coring::run(silent_peer(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("faults - a listener keeps accepting after clients that connect and reset at once", "[net][faults]") {
    const coring_test::default_sigpipe sigpipe;
    const int fds = coring_test::open_fds();
    for_each_tcp_family([](auto fam) { coring::run(accept_after_resets(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("faults - EMFILE storm: the server backs off without spinning and recovers", "[net][faults]") {
    const int fds = coring_test::open_fds();
    // Both ways of accepting: one standing multishot accept, and an accept submitted per call.
    const bool multishot = GENERATE(true, false);
    INFO("loop_options::multishot_accept = " << multishot);
    {
        coring_test::pipe_fds err; // the child's stderr: where the listener says it is out of descriptors
        coring_test::forked_child child([&err, multishot](int report_fd) {
            ::dup2(err.w, STDERR_FILENO);
            err.close_read();
            err.close_write();
            rlimit low{};
            ::getrlimit(RLIMIT_NOFILE, &low);
            low.rlim_cur = 64;
            if (::setrlimit(RLIMIT_NOFILE, &low) != 0) return 4;
            coring::loop_options o;
            o.multishot_accept = multishot;
            coring::event_loop loop(o);
            return loop.run(storm_server(report_fd));
        });
        err.close_write();
        std::uint16_t port = 0;
        REQUIRE(child.report(&port, sizeof port, 5000ms));

        std::vector<int> conns;
        for (int i = 0; i < 200; ++i) {
            const int fd = connect_blocking(port);
            REQUIRE(fd >= 0);
            conns.push_back(fd);
        }
        // The first connections were accepted before the descriptors ran out: they are served all along.
        CHECK(round_trip(conns[0], "early\n") == "early\n");
        std::this_thread::sleep_for(200ms);
        const int child_fds = fds_of(child.pid());
        INFO("the child has " << child_fds << " descriptors open, with a limit of 64");
        CHECK(child_fds >= 60);

        const coring_test::stopwatch wall;
        const double cpu0 = cpu_seconds(child.pid());
        std::this_thread::sleep_for(1s);
        const double cpu1 = cpu_seconds(child.pid());
        const double share = (cpu1 - cpu0) / wall.seconds();
        INFO("the child used " << cpu1 - cpu0 << " s of CPU in " << wall.seconds() << " s while out of descriptors");
        REQUIRE(cpu0 >= 0);
        CHECK(share < 0.3);

        for (const int fd : conns) ::close(fd);
        const int fresh = connect_blocking(port);
        REQUIRE(fresh >= 0);
        CHECK(round_trip(fresh, "after the storm\n") == "after the storm\n");
        ::close(fresh);

        bool timed_out = false;
        const int status = child.stop(SIGTERM, 5000ms, &timed_out);
        const std::string said = drain_pipe(err.r);
        INFO("child: " << coring_test::describe_status(status) << "; its stderr:\n" << said);
        CHECK_FALSE(timed_out);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        CHECK_THAT(said, Catch::Contains("Too many open files"));
        CHECK_THAT(said, Catch::Contains("accept on 127.0.0.1:" + std::to_string(port)));
    }
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_faults
