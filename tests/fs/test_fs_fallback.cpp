// On a kernel without the file opcodes (forced with loop_options::unsupported_opcodes), every file and filesystem
// call falls back to the worker pool and behaves the same.

#include "support/fs_helpers.hpp"
#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <liburing.h>

#include <cerrno>
#include <string>
#include <system_error>

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
    const std::string data = coring_test::pattern(3 << 20);
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
          "[fs][fallback]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    std::uint64_t ring_sqes = 0, pool_sqes = 0;
    {
        coring::event_loop loop;
        loop.run(everything(dir));
        ring_sqes = loop.stats().sqes;
    }
    ::unlink((dir / "fifo").c_str());
    ::unlink((dir / "f.bin").c_str());
    {
        coring::event_loop loop(without_file_opcodes());
        CHECK_FALSE(loop.supports(IORING_OP_OPENAT));
        CHECK_FALSE(loop.supports(IORING_OP_READ));
        CHECK(loop.supports(IORING_OP_NOP));
        loop.run(everything(dir));
        pool_sqes = loop.stats().sqes;
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

} // namespace
