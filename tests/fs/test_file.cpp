// coring::file: open modes, positional and sequential reads and writes, sync, size, close, the destructor, errors.

#include "support/fs_helpers.hpp"
#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace test_file {

using namespace std::chrono_literals;
using coring::file;
using coring::open_mode;
using coring::task;
using coring_test::failure_of;
using coring_test::io_failure;
using coring_test::temp_dir;

namespace {

task<> open_modes(const temp_dir& dir) {
    const std::string p = dir / "modes.txt";

    // write | create makes the file; read alone cannot write.
    {
        file f = co_await file::open(p, open_mode::write | open_mode::create);
        CHECK(f.is_open());
        CHECK(f.path() == p);
        const std::size_t n = co_await f.write("hello world");
        CHECK(n == 11);
        co_await f.close();
        CHECK_FALSE(f.is_open());
    }
    CHECK(coring_test::slurp(p) == "hello world");
    {
        file f = co_await file::open(p, open_mode::read);
        char buf[32];
        const std::size_t n = co_await f.read(std::span(buf));
        CHECK(std::string(buf, n) == "hello world");
        const io_failure w = co_await failure_of(f.write("x"));
        CHECK(w.code == EBADF);
        CHECK(w.what.find("write " + p) != std::string::npos);
    }
    // append: every write goes to the end, whatever the position says.
    {
        file f = co_await file::open(p, open_mode::append);
        co_await f.write_all("!");
        co_await f.write_all_at("?", 0);
        co_await f.close();
    }
    CHECK(coring_test::slurp(p) == "hello world!?");
    // read | write on an existing file, no truncation: overwrite in place.
    {
        file f = co_await file::open(p, open_mode::read | open_mode::write);
        co_await f.write_all_at("J", 0);
        co_await f.close();
    }
    CHECK(coring_test::slurp(p) == "Jello world!?");
    // truncate empties it.
    {
        file f = co_await file::open(p, open_mode::write | open_mode::truncate);
        const std::uint64_t size = co_await f.size();
        CHECK(size == 0);
    }
    CHECK(coring_test::slurp(p).empty());
    // exclusive refuses an existing file, and creates a missing one.
    const io_failure ex =
        co_await failure_of(file::open(p, open_mode::write | open_mode::create | open_mode::exclusive));
    CHECK(ex.code == EEXIST);
    CHECK(ex.what.find("open " + p) != std::string::npos);
    {
        file f = co_await file::open(dir / "fresh", open_mode::write | open_mode::create | open_mode::exclusive, 0600);
        struct stat st {};
        REQUIRE(::fstat(f.native_handle(), &st) == 0);
        const mode_t mask = ::umask(0);
        ::umask(mask);
        CHECK((st.st_mode & 0777) == (0600 & ~mask));
    }
}

TEST_CASE("file - open modes: create, read-only, append, read-write, truncate, exclusive, permissions", "[fs][file]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    coring::run(open_modes(dir));
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("file - modes that mean nothing are std::invalid_argument before any I/O", "[fs][file]") {
    temp_dir dir;
    coring::run([](const temp_dir& d) -> task<> {
        CHECK_THROWS_AS(file::open(d / "x", open_mode::create), std::invalid_argument);
        CHECK_THROWS_AS(file::open(d / "x", open_mode::read | open_mode::truncate), std::invalid_argument);
        CHECK_THROWS_AS(file::open(d / "x", open_mode::write | open_mode::exclusive), std::invalid_argument);
        CHECK_THROWS_AS(file::open(d / "x", static_cast<open_mode>(1u << 12)), std::invalid_argument);
        co_return;
    }(dir));
    CHECK_FALSE(coring_test::exists(dir / "x"));
}

task<> positional_and_sequential(const temp_dir& dir) {
    const std::string p = dir / "data.bin";
    const std::string content = coring_test::pattern_bytes(100000);
    coring_test::spit(p, content);

    file f = co_await file::open(p, open_mode::read | open_mode::write);
    // read_at returns what the kernel gave, 0 at and past the end.
    std::string buf(1000, '\0');
    std::size_t n = co_await f.read_at(std::span(buf), 5000);
    CHECK(n == 1000);
    CHECK(buf == content.substr(5000, 1000));
    n = co_await f.read_at(std::span(buf), 99500);
    CHECK(n == 500);
    CHECK(buf.substr(0, 500) == content.substr(99500));
    n = co_await f.read_at(std::span(buf), 100000);
    CHECK(n == 0);
    n = co_await f.read_at(std::span(buf), 1u << 30);
    CHECK(n == 0);
    // An empty buffer does not wait and reads nothing.
    n = co_await f.read_at(std::span(buf.data(), 0), 0);
    CHECK(n == 0);

    // Sequential reads advance position(); seek moves it; reads do not move it for positional calls.
    CHECK(f.position() == 0);
    n = co_await f.read(std::span(buf));
    CHECK(n == 1000);
    CHECK(buf == content.substr(0, 1000));
    CHECK(f.position() == 1000);
    f.seek(99900);
    n = co_await f.read(std::span(buf));
    CHECK(n == 100);
    CHECK(f.position() == 100000);
    n = co_await f.read(std::span(buf));
    CHECK(n == 0);
    CHECK(f.position() == 100000);

    // Sequential writes go at the position; write_at does not move it; writing past the end leaves a hole of zeros.
    f.seek(10);
    co_await f.write_all("ABCDEF");
    CHECK(f.position() == 16);
    const std::size_t w = co_await f.write_at("xyz", 200000);
    CHECK(w == 3);
    CHECK(f.position() == 16);
    const std::uint64_t size = co_await f.size();
    CHECK(size == 200003);
    co_await f.sync();
    co_await f.sync_data();
    co_await f.close();

    std::string expect = content;
    expect.replace(10, 6, "ABCDEF");
    expect.resize(200000, '\0');
    expect += "xyz";
    CHECK(coring_test::slurp(p) == expect);
}

TEST_CASE("file - read_at, read, write_at, write_all, seek, position, size, sync, reads past the end", "[fs][file]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    coring::run(positional_and_sequential(dir));
    CHECK(coring_test::open_fds() == fds);
}

task<> parallel_reads(const temp_dir& dir) {
    const std::string p = dir / "parallel.bin";
    const std::size_t size = 8 << 20;
    const std::string content = coring_test::pattern_bytes(size);
    coring_test::spit(p, content);
    file f = co_await file::open(p, open_mode::read);

    // 64 reads in flight at once, of different lengths at random offsets (some past the end), in one gather.
    std::mt19937_64 rng(42);
    struct job {
        std::uint64_t offset;
        std::string buf;
    };
    std::vector<job> jobs;
    for (int i = 0; i < 64; ++i) {
        const std::size_t len = 1 + rng() % (256 * 1024);
        const std::uint64_t off = rng() % (size + 4096);
        jobs.push_back({off, std::string(len, '\0')});
    }
    std::vector<task<std::size_t>> reads;
    for (auto& j : jobs)
        reads.push_back([](file& f, job& j) -> task<std::size_t> {
            co_return co_await f.read_at(std::span(j.buf), j.offset);
        }(f, j));
    const std::vector<std::size_t> got = co_await coring::gather(std::move(reads));
    REQUIRE(got.size() == jobs.size());
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        const auto& j = jobs[i];
        const std::size_t expect = j.offset >= size ? 0 : std::min<std::size_t>(j.buf.size(), size - j.offset);
        CHECK(got[i] == expect);
        CHECK(j.buf.compare(0, got[i], content, std::min<std::size_t>(j.offset, size), got[i]) == 0);
    }
}

TEST_CASE("file - 64 positional reads in flight at once each get their own bytes", "[fs][file]") {
    temp_dir dir;
    coring::run(parallel_reads(dir));
}

namespace {

/// Whether awaiting `aw` is a std::logic_error (any other outcome is false).
template <class Awaitable>
task<bool> logic_error_of(Awaitable aw) {
    try {
        (void)co_await std::move(aw);
    } catch (const std::logic_error&) {
        co_return true;
    } catch (...) {}
    co_return false;
}

} // namespace

TEST_CASE("file - two sequential operations at once, or I/O on a closed file, are logic errors", "[fs][file]") {
    temp_dir dir;
    coring_test::spit(dir / "f", "abc");
    coring::run([](const temp_dir& d) -> task<> {
        file f = co_await file::open(d / "f", open_mode::read);
        // A FIFO keeps the first read in flight while the second is tried.
        REQUIRE(::mkfifo((d / "fifo").c_str(), 0600) == 0);
        file pipe = co_await file::open(d / "fifo", open_mode::read | open_mode::write);
        char a[4], b[4];
        auto first = coring::spawn([](file& p, std::span<char> buf) -> task<std::size_t> {
            co_return co_await p.read(buf);
        }(pipe, std::span(a)));
        co_await coring::sleep(5ms);
        CHECK_THROWS_AS(co_await pipe.read(std::span(b)), std::logic_error);
        // A positional read may run beside it.
        const std::size_t n = co_await f.read_at(std::span(b), 0);
        CHECK(n == 3);
        co_await pipe.write_at("zz", 0);
        const std::size_t m = co_await first;
        CHECK(m == 2);
        CHECK(std::string(a, 2) == "zz");

        co_await f.close();
        co_await f.close(); // twice is harmless
        CHECK_THROWS_AS(co_await f.read_at(std::span(b), 0), std::logic_error);
        CHECK_THROWS_AS(co_await f.write("x"), std::logic_error);
        const bool size_refused = co_await logic_error_of(f.size());
        CHECK(size_refused);
        const bool sync_refused = co_await logic_error_of(f.sync());
        CHECK(sync_refused);
        file none;
        CHECK_FALSE(none.is_open());
        CHECK_THROWS_AS(co_await none.read(std::span(b)), std::logic_error);
    }(dir));
}

task<> destructor_closes(const temp_dir& dir, int baseline) {
    coring_test::spit(dir / "f", "abc");
    for (int i = 0; i < 100; ++i) {
        file f = co_await file::open(dir / "f", open_mode::read);
        CHECK(f.is_open());
    } // each closed by an IORING_OP_CLOSE nobody awaits
    co_await coring::sleep(10ms);
    // Only the loop's ring; on epoll, its epoll descriptor and the inbox eventfd of the worker pool the opens ran on.
    const int loop_fds = coring::event_loop::current().backend() == coring::backend::epoll ? 2 : 1;
    CHECK(coring_test::open_fds() == baseline + loop_fds);
    // Moving carries the descriptor, the path and the position; the moved-from file is empty.
    file a = co_await file::open(dir / "f", open_mode::read);
    a.seek(2);
    file b = std::move(a);
    CHECK_FALSE(a.is_open());
    CHECK(b.is_open());
    CHECK(b.position() == 2);
    CHECK(b.path() == dir / "f");
    char c;
    const std::size_t n = co_await b.read(std::span(&c, 1));
    CHECK(n == 1);
    CHECK(c == 'c');
    file d;
    d = std::move(b);
    CHECK(d.is_open());
}

TEST_CASE("file - the destructor closes without blocking, moves carry the descriptor, fd count back to baseline",
          "[fs][file]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    coring::run(destructor_closes(dir, fds));
    CHECK(coring_test::open_fds() == fds);

    // A file that outlives its loop is closed with close(2).
    file kept;
    coring::run(
        [](file& out, const temp_dir& d) -> task<> { out = co_await file::open(d / "f", open_mode::read); }(kept, dir));
    CHECK(kept.is_open());
    CHECK(coring_test::open_fds() == fds + 1);
    kept = file();
    CHECK(coring_test::open_fds() == fds);
}

task<> error_messages(const temp_dir& dir) {
    const std::string missing = dir / "no/such/file";
    const io_failure a = co_await failure_of(file::open(missing, open_mode::read));
    CHECK(a.code == ENOENT);
    CHECK(a.what == "coring: open " + missing + ": No such file or directory");

    // A directory where a file was expected.
    const io_failure b = co_await failure_of(file::open(dir.path(), open_mode::write));
    CHECK(b.code == EISDIR);
    CHECK(b.what.find("open " + dir.path()) != std::string::npos);
    file d = co_await file::open(dir.path(), open_mode::read);
    char buf[16];
    const io_failure c = co_await failure_of(d.read_at(std::span(buf), 0));
    CHECK(c.code == EISDIR);
    CHECK(c.what == "coring: read " + dir.path() + ": Is a directory");
    // A path component that is a file.
    coring_test::spit(dir / "plain", "x");
    const io_failure e = co_await failure_of(file::open(dir / "plain/inside", open_mode::read));
    CHECK(e.code == ENOTDIR);
}

TEST_CASE("file - errors are std::system_error naming the operation and the path", "[fs][file]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    coring::run(error_messages(dir));
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("file - permission denied names the path (as an unprivileged user)", "[fs][file]") {
    temp_dir dir;
    const std::string secret = dir / "secret";
    coring_test::spit(secret, "x");
    REQUIRE(::chmod(secret.c_str(), 0600) == 0);
    if (::geteuid() != 0) {
        REQUIRE(::chmod(secret.c_str(), 0) == 0);
        coring::run([](std::string p) -> task<> {
            const io_failure f = co_await failure_of(file::open(p, open_mode::read));
            CHECK(f.code == EACCES);
            CHECK(f.what == "coring: open " + p + ": Permission denied");
        }(secret));
        return;
    }
    // Root reads everything: check as nobody, in a child (the loop is made there, after the fork).
    REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
    const int r = coring_test::as_nobody([&] {
        return coring::run([](std::string p) -> task<bool> {
            const io_failure f = co_await failure_of(file::open(p, open_mode::read));
            co_return f.code == EACCES&& f.what == "coring: open " + p + ": Permission denied";
        }(secret));
    });
    if (r < 0) WARN("cannot drop privileges to uid 65534 here: permission check skipped");
    else CHECK(r == 0);
}

task<> fifo_read_with_timeout(const temp_dir& dir) {
    const std::string p = dir / "fifo";
    REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
    // read | write: opening does not wait for a writer.
    file f = co_await file::open(p, open_mode::read | open_mode::write);
    char buf[16];
    CHECK_THROWS_AS(co_await coring::timeout(20ms, f.read(std::span(buf))), coring::timeout_error);
    CHECK(f.position() == 0);
    // Bytes written afterwards are read normally: the cancelled read took nothing.
    co_await f.write_all("late bytes");
    const std::size_t n = co_await f.read(std::span(buf));
    CHECK(std::string(buf, n) == "late bytes");
}

TEST_CASE("file - a FIFO read cancelled by a timeout, later bytes are read normally", "[fs][file]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    for (const auto& s : coring_test::setups()) {
        INFO(s.name);
        coring::event_loop loop(s.options);
        loop.run(fifo_read_with_timeout(dir));
        ::unlink((dir / "fifo").c_str());
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("file - a FIFO opens without waiting for its other end (documented io_uring behaviour)",
          "[fs][file][io_uring-only]") {
    temp_dir dir;
    const std::string p = dir / "fifo";
    REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
    const int fds = coring_test::open_fds();
    coring::run([](std::string path) -> task<> {
        // The kernel tries a non-blocking open first: writing with no reader is ENXIO at once, never a hang...
        const io_failure w = co_await failure_of(coring::timeout(5s, file::open(path, open_mode::write)));
        CHECK(w.code == ENXIO);
        CHECK(w.what.find("open " + path) != std::string::npos);
        // ...and reading opens at once; a read then waits for a writer's bytes (here: until the timeout).
        file r = co_await coring::timeout(5s, file::open(path, open_mode::read));
        CHECK(r.is_open());
        char buf[4];
        CHECK_THROWS_AS(co_await coring::timeout(20ms, r.read(std::span(buf))), coring::timeout_error);
        // With a reader present, a writer opens and its bytes arrive.
        file w2 = co_await file::open(path, open_mode::write);
        co_await w2.write_all("abc");
        const std::size_t n = co_await r.read(std::span(buf));
        CHECK(std::string(buf, n) == "abc");
        co_await w2.close();
        co_await r.close();
    }(p));
    CHECK(coring_test::open_fds() == fds);
}

/// How an open ended: "opened", "timeout", "cancelled", or the std::system_error's errno and text.
task<std::string> open_outcome(std::string path, open_mode mode, std::chrono::milliseconds limit) {
    std::string outcome;
    try {
        file f = co_await coring::timeout(limit, file::open(path, mode));
        outcome = "opened";
    } catch (const coring::timeout_error&) {
        outcome = "timeout";
    } catch (const coring::cancelled_error&) {
        outcome = "cancelled";
    } catch (const std::system_error& e) {
        outcome = std::to_string(e.code().value()) + " " + e.what();
    }
    co_return outcome;
}

TEST_CASE("file - an open that waits in the kernel for a FIFO's reader ends with timeout_error when cancelled",
          "[fs][file][io_uring-only]") {
    // With create (or truncate) io_uring skips its non-blocking first try: the open waits in a worker thread for a
    // reader, as open(2) would, until the timeout cancels it. The worker's open is interrupted then, and its CQE says
    // -ERESTARTSYS (512), a code meant never to reach user space (Linux 6.18; -EINTR on 6.1): it must read as the
    // cancellation it is, not as std::system_error 512.
    temp_dir dir;
    const std::string p = dir / "fifo";
    REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
    const int fds = coring_test::open_fds();
    coring::run([](std::string path) -> task<> {
        for (int i = 0; i < 3; ++i) {
            const std::string outcome = co_await open_outcome(path, open_mode::write | open_mode::create, 50ms);
            CHECK(outcome == "timeout");
        }
        // The FIFO is still usable: with a reader, the same open succeeds.
        file r = co_await file::open(path, open_mode::read);
        const std::string outcome = co_await open_outcome(path, open_mode::write | open_mode::create, 5s);
        CHECK(outcome == "opened");
        co_await r.close();
    }(p));
    CHECK(coring_test::open_fds() == fds);
}

task<> cancelled_opens(const temp_dir& dir) {
    coring_test::spit(dir / "f", "abc");
    // Cancel opens at every stage: before they start, in the kernel, and as they complete. A completed one is
    // returned (and closed by its file); a cancelled one leaves no descriptor behind.
    int opened = 0, cancelled = 0;
    for (int i = 0; i < 200; ++i) {
        auto h = coring::spawn([](std::string p) -> task<bool> {
            file f = co_await file::open(p, open_mode::read);
            co_return f.is_open();
        }(dir / "f"));
        for (int y = 0; y < i % 3; ++y) co_await coring::yield_now();
        h.cancel();
        try {
            if (co_await h) ++opened;
        } catch (const coring::cancelled_error&) {
            ++cancelled;
        }
    }
    CHECK(opened + cancelled == 200);
    CHECK(cancelled > 0);
}

TEST_CASE("file - opens cancelled at every stage leak no descriptor", "[fs][file]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    coring::run(cancelled_opens(dir));
    CHECK(coring_test::open_fds() == fds);
}

task<> direct_io(const temp_dir& dir, bool& skipped) {
    const std::string p = dir / "direct.bin";
    file f;
    try {
        f = co_await file::open(p, open_mode::read | open_mode::write | open_mode::create | open_mode::direct);
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == EINVAL);
        CHECK(std::string(e.what()).find("open_mode::direct") != std::string::npos);
        skipped = true;
        co_return;
    }
    CHECK(f.direct());
    CHECK(f.direct_io_alignment() >= 1);
    coring::aligned_buffer out(64 * 1024);
    CHECK(reinterpret_cast<std::uintptr_t>(out.data()) % 4096 == 0);
    const std::string pat = coring_test::pattern_bytes(out.size());
    std::memcpy(out.data(), pat.data(), out.size());
    co_await f.write_all_at(out, 0);
    coring::aligned_buffer in(64 * 1024);
    const std::size_t n = co_await f.read_at(in.span(), 0);
    CHECK(n == in.size());
    CHECK(std::memcmp(in.data(), pat.data(), n) == 0);

    // Misaligned buffer, offset or length: a clear error before anything reaches the kernel.
    const auto al = f.direct_io_alignment();
    const auto ml = f.direct_memory_alignment();
    std::vector<io_failure> bad;
    if (ml > 1) bad.push_back(co_await failure_of(f.read_at(in.span().subspan(1, al), 0)));
    if (al > 1) bad.push_back(co_await failure_of(f.read_at(in.span().first(al), 1)));
    if (al > 1) bad.push_back(co_await failure_of(f.write_at(std::span<const std::byte>(in.data(), al - 1), 0)));
    CHECK_FALSE(bad.empty());
    for (const auto& b : bad) {
        CHECK(b.code == EINVAL);
        CHECK(b.what.find(p) != std::string::npos);
        CHECK(b.what.find("aligned") != std::string::npos);
    }
    CHECK_THROWS_AS(coring::aligned_buffer(10, 3), std::invalid_argument);
}

TEST_CASE("file - open_mode::direct with aligned_buffer, misaligned transfers are a clear EINVAL", "[fs][file]") {
    temp_dir dir;
    bool skipped = false;
    coring::run(direct_io(dir, skipped));
    if (skipped) WARN("O_DIRECT is not supported on " << dir.path() << ": only the error was checked");
}

} // namespace

TEMPLATE_TEST_CASE("file - open takes a std::filesystem::path, std::string, std::string_view or const char*",
                   "[fs][file][path]", coring_test::as_fs_path, coring_test::as_string, coring_test::as_string_view,
                   coring_test::as_c_str) {
    temp_dir dir;
    coring::run([](const temp_dir& d) -> task<> {
        const std::string p = d / "named";
        file w = co_await file::open(TestType{}(p), open_mode::write | open_mode::create);
        co_await w.write_all("abc");
        co_await w.close();
        CHECK(w.path() == p);

        // The awaitable keeps its own copy: the caller's string is gone before the kernel reads the path.
        auto opening = file::open(TestType{}(std::string(p)), open_mode::read);
        file r = co_await std::move(opening);
        CHECK(r.path() == p);
        char buf[8];
        const std::size_t n = co_await r.read_at(std::span(buf), 0);
        CHECK(std::string(buf, n) == "abc");
        co_await r.close();

        const io_failure missing = co_await failure_of(file::open(TestType{}(d / "missing"), open_mode::read));
        CHECK(missing.code == ENOENT);
        CHECK(missing.what.find("open " + (d / "missing")) != std::string::npos);
    }(dir));
}

namespace {

// ---- close() and the destructor with operations in flight (issue 10) --------------------------------------------

/// How an operation that close() (or the destructor) should have stopped ended.
struct op_end {
    bool ended = false;
    bool cancelled = false; // cancelled_error
    int code = 0;           // std::system_error's errno
    std::string what;
    std::size_t n = 0;
};

template <class Awaitable>
task<> record_end(Awaitable aw, op_end& out) {
    try {
        out.n = co_await std::move(aw);
    } catch (const std::system_error& e) {
        out.code = e.code().value();
        out.what = e.what();
    } catch (const coring::cancelled_error&) {
        out.cancelled = true;
    }
    out.ended = true;
}

bool all_ended(const std::vector<op_end>& ends) {
    return std::all_of(ends.begin(), ends.end(), [](const op_end& e) { return e.ended; });
}

/// Waits up to 2 s for every operation to end. Past that (the defect: nothing stopped them) it unblocks them through
/// the FIFOs, writing for the readers and draining for the writers, so that the test fails instead of hanging.
/// Returns whether they ended on their own.
task<bool> ended_by_themselves(const std::vector<op_end>& ends, std::vector<std::string> fifos) {
    for (int i = 0; i < 400 && !all_ended(ends); ++i) co_await coring::sleep(5ms);
    if (all_ended(ends)) co_return true;
    std::vector<int> fds;
    for (const auto& p : fifos) fds.push_back(::open(p.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    char sink[65536];
    for (int i = 0; i < 2000 && !all_ended(ends); ++i) {
        for (const int fd : fds) {
            while (::read(fd, sink, sizeof sink) > 0) {}
            (void)!::write(fd, "unblock!", 8);
        }
        co_await coring::sleep(5ms);
    }
    for (const int fd : fds)
        if (fd >= 0) ::close(fd);
    co_return false;
}

/// Whether a FIFO has a reader left: opening it write-only without blocking fails with ENXIO when it has none.
bool has_reader(const std::string& fifo) {
    const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) ::close(fd);
    return fd >= 0 || errno != ENXIO;
}

/// Three reads (one sequential, two positional) in flight on an empty FIFO and a write_all on a full one; then
/// close() or destroy both files under them.
task<> stop_in_flight(const temp_dir& dir, bool destroy) {
    const std::string in = dir / "in", out = dir / "out";
    REQUIRE(::mkfifo(in.c_str(), 0600) == 0);
    REQUIRE(::mkfifo(out.c_str(), 0600) == 0);
    file r0 = co_await file::open(in, open_mode::read | open_mode::write);
    file w0 = co_await file::open(out, open_mode::read | open_mode::write);
    const int with_files = coring_test::open_fds();
    auto rf = std::make_unique<file>(std::move(r0));
    auto wf = std::make_unique<file>(std::move(w0));

    std::vector<op_end> ends(4);
    char a[16], b[16], c[16];
    const std::string big(1 << 20, 'x'); // far more than the FIFO holds: the write blocks
    auto h0 = coring::spawn(record_end(rf->read(std::span(a)), ends[0]));
    auto h1 = coring::spawn(record_end(rf->read_at(std::span(b), 0), ends[1]));
    auto h2 = coring::spawn(record_end(rf->read_at(std::span(c), 0), ends[2]));
    auto h3 = coring::spawn(record_end(wf->write_all(big), ends[3]));
    co_await coring::sleep(20ms);
    for (const auto& e : ends) CHECK_FALSE(e.ended);

    if (destroy) {
        rf.reset();
        wf.reset();
    } else {
        co_await rf->close();
        co_await wf->close();
        CHECK_FALSE(rf->is_open());
        CHECK_FALSE(wf->is_open());
    }
    std::vector<std::string> fifos{in, out};
    const bool stopped = co_await ended_by_themselves(ends, std::move(fifos));
    co_await h0;
    co_await h1;
    co_await h2;
    co_await h3;
    CHECK(stopped);
    for (int i = 0; i < 3; ++i) {
        INFO("read " << i);
        CHECK_FALSE(ends[i].cancelled);
        CHECK(ends[i].code == ECANCELED);
        CHECK(ends[i].what == "coring: read " + in + " (the file was closed): Operation canceled");
    }
    CHECK_FALSE(ends[3].cancelled);
    CHECK(ends[3].code == ECANCELED);
    CHECK(ends[3].what == "coring: write " + out + " (the file was closed): Operation canceled");

    // Both descriptors are gone, and nothing holds the FIFOs open any more (an in-flight operation held its own
    // reference, keeping a reader on each).
    for (int i = 0; i < 200 && coring_test::open_fds() != with_files - 2; ++i) co_await coring::sleep(5ms);
    CHECK(coring_test::open_fds() == with_files - 2);
    CHECK_FALSE(has_reader(in));
    CHECK_FALSE(has_reader(out));
    ::unlink(in.c_str());
    ::unlink(out.c_str());
}

/// The ring setups, and one where reads, writes and closes run on the worker pool.
std::vector<coring_test::named_setup> close_setups() {
    auto v = coring_test::setups();
    coring::loop_options pool;
    pool.unsupported_opcodes = {IORING_OP_OPENAT, IORING_OP_READ, IORING_OP_WRITE, IORING_OP_CLOSE};
    v.push_back({"worker pool", pool});
    return v;
}

} // namespace

TEST_CASE("file - close() stops the reads and writes in flight: they end with ECANCELED, nothing stays open",
          "[fs][file][close]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    for (const auto& s : close_setups()) {
        INFO(s.name);
        coring::event_loop loop(s.options);
        loop.run(stop_in_flight(dir, false));
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("file - destroying a file with reads and writes in flight stops them, never aborts, leaks nothing",
          "[fs][file][close]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    for (const auto& s : close_setups()) {
        INFO(s.name);
        coring::event_loop loop(s.options);
        loop.run(stop_in_flight(dir, true));
    }
    CHECK(coring_test::open_fds() == fds);
}

namespace {

/// sync(), sync_data() and size() made while the file is open and awaited after its close() (or after another file
/// was moved into it) are std::logic_errors, as reads and writes are: they once kept the descriptor they saw when
/// made, ran on it although it was closed (or its number taken by another open) and listed themselves on the
/// closed file.
task<> awaited_after_close(const temp_dir& dir) {
    coring_test::spit(dir / "f", "abc");
    coring_test::spit(dir / "g", "defgh");
    file f = co_await file::open(dir / "f", open_mode::read | open_mode::write);
    auto sync = f.sync();
    auto sync_data = f.sync_data();
    auto size = f.size();
    co_await f.close();
    // Another open takes the closed descriptor's number.
    file g = co_await file::open(dir / "g", open_mode::read);
    const bool r1 = co_await logic_error_of(std::move(sync));
    const bool r2 = co_await logic_error_of(std::move(sync_data));
    const bool r3 = co_await logic_error_of(std::move(size));
    CHECK(r1);
    CHECK(r2);
    CHECK(r3);

    // Made before a move-assignment closed the file, awaited after: they run on the new file.
    file h = co_await file::open(dir / "f", open_mode::read);
    auto size_h = h.size();
    h = std::move(g);
    const std::uint64_t n = co_await std::move(size_h);
    CHECK(n == 5);
    co_await h.close();
}

} // namespace

TEST_CASE("file - sync, sync_data or size made before close() and awaited after: a logic error", "[fs][file][close]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    for (const auto& s : close_setups()) {
        INFO(s.name);
        coring::event_loop loop(s.options);
        loop.run(awaited_after_close(dir));
    }
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_file
