// On a kernel without the file opcodes (forced with loop_options::unsupported_opcodes), every file and filesystem
// call falls back to the worker pool and behaves the same.

#include "support/fs_helpers.hpp"
#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <system_error>
#include <vector>

namespace test_fs_fallback {

using namespace std::chrono_literals;
using coring::file;
using coring::open_mode;
using coring::task;
using coring_test::temp_dir;

namespace {

coring::loop_options without_file_opcodes() {
    coring::loop_options o;
    o.unsupported_opcodes = {IORING_OP_OPENAT,   IORING_OP_READ,     IORING_OP_WRITE,
                             IORING_OP_FSYNC,    IORING_OP_STATX,    IORING_OP_CLOSE,
                             IORING_OP_RENAMEAT, IORING_OP_UNLINKAT, IORING_OP_MKDIRAT};
    return o;
}

task<> everything(const temp_dir& dir) {
    const std::string p = dir / "f.bin";
    const std::string data = coring_test::pattern_bytes(3 << 20);
    {
        file f = co_await file::open(p, open_mode::read | open_mode::write | open_mode::create);
        co_await f.write_all(data);
        CHECK(f.position() == data.size());
        const std::size_t w = co_await f.write_at("xyz", 10);
        CHECK(w == 3);
        co_await f.sync();
        co_await f.sync_data();
        const std::uint64_t size = co_await f.size();
        CHECK(size == data.size());
        std::string buf(100, '\0');
        const std::size_t n = co_await f.read_at(std::span(buf), 8);
        CHECK(n == 100);
        CHECK(buf.substr(0, 2) == data.substr(8, 2));
        CHECK(buf.substr(2, 3) == "xyz");
        const std::size_t end = co_await f.read_at(std::span(buf), data.size());
        CHECK(end == 0);
        f.seek(data.size() - 10);
        const std::size_t tail = co_await f.read(std::span(buf));
        CHECK(tail == 10);
        co_await f.close();
    }
    std::string expect = data;
    expect.replace(10, 3, "xyz");
    const std::string back = co_await coring::read_file(p);
    CHECK(back == expect);
    co_await coring::write_file(dir / "g", std::string_view("small"));
    const std::string g = co_await coring::read_file(dir / "g");
    CHECK(g == "small");
    const std::string proc = co_await coring::read_file("/proc/self/status");
    CHECK(proc.find("Name:") != std::string::npos);

    co_await coring::create_directory(dir / "d");
    co_await coring::rename(dir / "g", dir / "d/h");
    CHECK(coring_test::slurp(dir / "d/h") == "small");
    co_await coring::remove(dir / "d/h");
    co_await coring::remove_directory(dir / "d");
    CHECK_FALSE(coring_test::exists(dir / "d"));

    // Errors read the same as on the ring.
    std::string what;
    try {
        (void)co_await file::open(dir / "missing", open_mode::read);
    } catch (const std::system_error& e) {
        what = e.what();
    }
    CHECK(what == "coring: open " + (dir / "missing") + ": No such file or directory");
    int code = 0;
    try {
        co_await coring::remove(dir / "missing");
    } catch (const std::system_error& e) {
        code = e.code().value();
    }
    CHECK(code == ENOENT);

    // A FIFO read through the pool (pread says ESPIPE there; the fallback reads instead).
    REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
    file fifo = co_await file::open(dir / "fifo", open_mode::read | open_mode::write);
    co_await fifo.write_all("through the pool");
    char buf[32];
    const std::size_t n = co_await fifo.read(std::span(buf));
    CHECK(std::string(buf, n) == "through the pool");
}

TEST_CASE("fs fallback - without the file opcodes every call runs on the worker pool, with the same results",
          "[fs][fallback][io_uring-only]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    // SQEs other than the inbox's eventfd reads (which wake the loop for the pool's results, as many as it slept).
    std::uint64_t ring_sqes = 0, pool_sqes = 0;
    {
        coring::event_loop loop;
        loop.run(everything(dir));
        ring_sqes = loop.stats().sqes - loop.stats().inbox_reads;
    }
    ::unlink((dir / "fifo").c_str());
    ::unlink((dir / "f.bin").c_str());
    {
        coring::event_loop loop(without_file_opcodes());
        CHECK_FALSE(loop.supports(IORING_OP_OPENAT));
        CHECK_FALSE(loop.supports(IORING_OP_READ));
        CHECK(loop.supports(IORING_OP_NOP));
        loop.run(everything(dir));
        pool_sqes = loop.stats().sqes - loop.stats().inbox_reads;
    }
    // The ring carried the file operations in the first run only (the second used it for wake-ups alone).
    INFO("ring run: " << ring_sqes << " SQEs, pool run: " << pool_sqes << " SQEs");
    CHECK(pool_sqes < ring_sqes);
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("fs fallback - a cancelled open on the pool closes what it opened", "[fs][fallback]") {
    temp_dir dir;
    coring_test::spit(dir / "f", "x");
    const int fds = coring_test::open_fds();
    {
        coring::event_loop loop(without_file_opcodes());
        loop.run([](const temp_dir& d) -> task<> {
            int opened = 0, cancelled = 0;
            for (int i = 0; i < 100; ++i) {
                auto h = coring::spawn([](std::string p) -> task<bool> {
                    file f = co_await file::open(p, open_mode::read);
                    co_return f.is_open();
                }(d / "f"));
                for (int y = 0; y < i % 4; ++y) co_await coring::yield_now();
                h.cancel();
                try {
                    if (co_await h) ++opened;
                } catch (const coring::cancelled_error&) {
                    ++cancelled;
                }
            }
            CHECK(opened + cancelled == 100);
        }(dir));
    }
    CHECK(coring_test::open_fds() == fds);
}

// ---- stopping a blocked pool job (issue 10) ------------------------------------------------------------------

/// Writes into a FIFO (opened read-write, so never blocking) every 5 ms after `delay` until `done`: it unblocks reads
/// the code under test failed to stop, so that such a test fails instead of hanging.
task<> unblock_after(std::string fifo, std::chrono::milliseconds delay, const bool& done) {
    for (auto waited = 0ms; waited < delay && !done; waited += 5ms) co_await coring::sleep(5ms);
    const int fd = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    while (!done) {
        (void)!::write(fd, "unblock!", 8);
        co_await coring::sleep(5ms);
    }
    ::close(fd);
}

TEST_CASE("fs fallback - a FIFO read blocked on a worker ends at once when its task is cancelled (a timeout)",
          "[fs][fallback][close]") {
    temp_dir dir;
    const std::string p = dir / "fifo";
    REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
    const int fds = coring_test::open_fds();
    {
        coring::event_loop loop(without_file_opcodes());
        loop.run([](std::string path) -> task<> {
            file f = co_await file::open(path, open_mode::read | open_mode::write);
            bool done = false;
            // Without the cancellation reaching the worker, the read would wait for the watchdog's write (10 s); the
            // bound below is half of that, loose enough for the emulated kernel 6.1 guest of CI (1.35 s seen there).
            auto watchdog = coring::spawn(unblock_after(path, 10s, done));
            char buf[16];
            const auto start = std::chrono::steady_clock::now();
            bool timed_out = false;
            try {
                (void)co_await coring::timeout(20ms, f.read(std::span(buf)));
            } catch (const coring::timeout_error&) {
                timed_out = true;
            }
            const auto took = std::chrono::steady_clock::now() - start;
            done = true;
            co_await watchdog;
            CHECK(timed_out);
            CHECK(took < 5s);
            CHECK(f.position() == 0);
            // The FIFO still works, and the cancelled read took nothing.
            co_await f.write_all("later");
            const std::size_t n = co_await f.read(std::span(buf));
            CHECK(std::string(buf, n) == "later");
            co_await f.close();
        }(p));
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("fs fallback - close() stops reads running on a worker and reads still queued behind it",
          "[fs][fallback][close]") {
    temp_dir dir;
    const std::string p = dir / "fifo";
    REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
    const int fds = coring_test::open_fds();
    {
        coring::loop_options one_worker = without_file_opcodes();
        one_worker.worker_threads = 1; // the second read waits in the pool's queue
        coring::event_loop loop(one_worker);
        loop.run([](std::string path) -> task<> {
            file f = co_await file::open(path, open_mode::read | open_mode::write);
            bool done = false;
            auto watchdog = coring::spawn(unblock_after(path, 10s, done)); // as above: a hang ends at 10 s
            struct end {
                int code = 0;
                std::string what;
            } a, b;
            auto reader = [](file& fl, std::uint64_t at, end& out) -> task<> {
                char buf[16];
                try {
                    (void)co_await fl.read_at(std::span(buf), at);
                } catch (const std::system_error& e) {
                    out.code = e.code().value();
                    out.what = e.what();
                }
            };
            auto ha = coring::spawn(reader(f, 0, a));
            auto hb = coring::spawn(reader(f, 0, b));
            co_await coring::sleep(20ms);
            const auto start = std::chrono::steady_clock::now();
            co_await f.close();
            co_await ha;
            co_await hb;
            const auto took = std::chrono::steady_clock::now() - start;
            done = true;
            co_await watchdog;
            CHECK(took < 5s);
            const std::string closed = "coring: read " + path + " (the file was closed): Operation canceled";
            CHECK(a.code == ECANCELED);
            CHECK(a.what == closed);
            CHECK(b.code == ECANCELED);
            CHECK(b.what == closed);
            // The worker is free again.
            const int answer = co_await coring::to_thread([] { return 42; });
            CHECK(answer == 42);
        }(p));
    }
    CHECK(coring_test::open_fds() == fds);
}

} // namespace

TEST_CASE("fs fallback - a write blocked on a full FIFO and cancelled by a timeout is a timeout_error",
          "[fs][fallback][close]") {
    temp_dir dir;
    const std::string p = dir / "fifo";
    REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
    const int fds = coring_test::open_fds();
    for (const bool all : {false, true}) {
        SECTION(all ? "write_all" : "write") {
            coring::event_loop loop(without_file_opcodes());
            loop.run([](std::string path, bool whole) -> task<> {
                file f = co_await file::open(path, open_mode::read | open_mode::write);
                REQUIRE(::fcntl(f.native_handle(), F_SETPIPE_SZ, 4096) >= 0);
                const std::string fill(4096, 'x');
                co_await f.write_all(fill); // the FIFO is full now
                bool done = false;
                auto watchdog = coring::spawn(unblock_after(path, 2000ms, done));
                const std::string more(100, 'y');
                std::string outcome = "returned";
                try {
                    if (whole) (void)co_await coring::timeout(50ms, f.write_all(more));
                    else (void)co_await coring::timeout(50ms, f.write(more));
                } catch (const coring::timeout_error&) {
                    outcome = "timeout_error";
                } catch (const coring::cancelled_error&) {
                    outcome = "cancelled_error";
                } catch (const std::system_error& e) {
                    outcome = e.what();
                }
                done = true;
                co_await watchdog;
                CHECK(outcome == "timeout_error");
                CHECK(f.position() == 4096); // nothing more was written
                co_await f.close();
            }(p, all));
        }
    }
    CHECK(coring_test::open_fds() == fds);
}

namespace {

/// As unblock_after, for readers and writers: drains the FIFO and writes to it until `done`.
task<> unblock_both_after(std::string fifo, std::chrono::milliseconds delay, const bool& done) {
    for (auto waited = 0ms; waited < delay && !done; waited += 5ms) co_await coring::sleep(5ms);
    const int fd = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    char sink[65536];
    while (!done) {
        while (::read(fd, sink, sizeof sink) > 0) {}
        (void)!::write(fd, "unblock!", 8);
        co_await coring::sleep(5ms);
    }
    ::close(fd);
}

/// Four positional reads of one empty FIFO, or four 4096-byte writes to a full one, each on its own worker; then one
/// byte written (or 4096 drained) from outside, which can wake every worker's poll but satisfies only one call; then
/// close(). The others must not be left blocked in read(2) or write(2), where close() cannot reach them. Which worker
/// wins, and whether the losers' polls saw the readiness, is up to the scheduler: `rounds` rounds, until one fails.
task<> several_on_one_fifo(std::string path, bool writers, int rounds) {
    constexpr int ops = 4;
    for (int round = 0; round < rounds; ++round) {
        file f = co_await file::open(path, open_mode::read | open_mode::write);
        REQUIRE(::fcntl(f.native_handle(), F_SETPIPE_SZ, 4096) >= 0);
        const std::string page(4096, 'x');
        if (writers) co_await f.write_all(page); // full
        const int other = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
        REQUIRE(other >= 0);
        bool done = false;
        auto watchdog = coring::spawn(unblock_both_after(path, 500ms, done));
        struct end {
            bool ended = false;
            std::string what;
        };
        std::vector<end> ends(ops);
        auto op = [](file& fl, bool write, const std::string& data, end& out) -> task<> {
            char buf[16];
            try {
                std::size_t n = 0;
                if (write) n = co_await fl.write_at(data, 0);
                else n = co_await fl.read_at(std::span(buf), 0);
                out.what = "did " + std::to_string(n);
            } catch (const std::system_error& e) {
                out.what = e.what();
            }
            out.ended = true;
        };
        std::vector<coring::join_handle<void>> handles;
        for (auto& e : ends) handles.push_back(coring::spawn(op(f, writers, page, e)));
        co_await coring::sleep(20ms); // every worker waits for the FIFO
        if (writers) {
            char sink[4096];
            CHECK(::read(other, sink, sizeof sink) == 4096); // room for one page
        } else {
            CHECK(::write(other, "1", 1) == 1); // one byte
        }
        co_await coring::sleep(20ms);
        co_await f.close();
        const auto all_ended = [&ends] {
            return std::all_of(ends.begin(), ends.end(), [](const end& e) { return e.ended; });
        };
        for (int i = 0; i < 60 && !all_ended(); ++i) co_await coring::sleep(5ms);
        const bool stopped = all_ended();              // within 300 ms of the close, before the watchdog
        for (auto& h : handles) co_await std::move(h); // the watchdog unblocks any left after 500 ms
        done = true;
        co_await watchdog;
        ::close(other);
        const std::string did = writers ? "did 4096" : "did 1";
        const std::string closed = "coring: " + std::string(writers ? "write " : "read ") + path +
                                   " (the file was closed): Operation canceled";
        const auto winners = std::count_if(ends.begin(), ends.end(), [&](const end& e) { return e.what == did; });
        const auto stopped_ones =
            std::count_if(ends.begin(), ends.end(), [&](const end& e) { return e.what == closed; });
        INFO("round " << round << ": " << ends[0].what << " | " << ends[1].what << " | " << ends[2].what << " | "
                      << ends[3].what);
        CHECK(stopped);
        CHECK(winners == 1);
        CHECK(stopped_ones == ops - 1);
        if (!stopped || winners != 1) break;
    }
}

} // namespace

TEST_CASE("fs fallback - several workers on one FIFO: those that lose the readiness never block in the call",
          "[fs][fallback][close]") {
    temp_dir dir;
    const std::string p = dir / "fifo";
    REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
    const int fds = coring_test::open_fds();
    for (const bool writers : {false, true}) {
        SECTION(writers ? "writes" : "reads") {
            coring::loop_options o = without_file_opcodes();
            o.worker_threads = 4;
            coring::event_loop loop(o);
            loop.run(several_on_one_fifo(p, writers, 40));
        }
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("fs fallback - a pty master on the worker pool is read and written itself, never a reopened copy",
          "[fs][fallback]") {
    // Reopening /proc/self/fd/N (how the pool makes a FIFO call non-blocking) runs the device's open() again: for
    // /dev/ptmx that is a new pty, so the bytes waiting on this one were never read and writes went elsewhere.
    const int m = ::posix_openpt(O_RDWR | O_NOCTTY);
    REQUIRE(m >= 0);
    REQUIRE(::grantpt(m) == 0);
    REQUIRE(::unlockpt(m) == 0);
    const int s = ::open(::ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
    REQUIRE(s >= 0);
    termios t{};
    REQUIRE(::tcgetattr(s, &t) == 0);
    ::cfmakeraw(&t);
    REQUIRE(::tcsetattr(s, TCSANOW, &t) == 0);
    REQUIRE(::write(s, "hello", 5) == 5); // waiting on the master
    coring::event_loop loop(without_file_opcodes());
    std::string got, echoed;
    loop.run([](int m, int s, std::string& got, std::string& echoed) -> task<> {
        file f(m, "ptmx");
        char buf[16];
        const std::size_t n = co_await coring::timeout(2s, f.read_at(std::span(buf), 0));
        got.assign(buf, n);
        const std::size_t w = co_await coring::timeout(2s, f.write_at(std::string_view("world"), 0));
        CHECK(w == 5);
        pollfd pf{s, POLLIN, 0};
        if (::poll(&pf, 1, 2000) > 0) {
            const ssize_t k = ::read(s, buf, sizeof buf);
            if (k > 0) echoed.assign(buf, static_cast<std::size_t>(k));
        }
        co_await f.close();
    }(m, s, got, echoed));
    ::close(s);
    CHECK(got == "hello");
    CHECK(echoed == "world");
}

} // namespace test_fs_fallback
