// read_file and write_file: small and large files, 256 MiB with checksums, files that change size while read,
// /proc files whose size reads 0, errors and cancellation.

#include "support/fs_helpers.hpp"
#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>

namespace test_whole_file {

using namespace std::chrono_literals;
using coring::file;
using coring::open_mode;
using coring::task;
using coring_test::temp_dir;

namespace {

task<> round_trips(const temp_dir& dir) {
    // Empty, one byte, just under, at and over one piece, and several pieces with a ragged end.
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{(1 << 20) - 1}, std::size_t{1 << 20},
                             std::size_t{(1 << 20) + 1}, std::size_t{(11 << 20) + 12345}}) {
        INFO("size " << size);
        const std::string p = dir / ("f" + std::to_string(size));
        const std::string data = coring_test::pattern_bytes(size, size);
        co_await coring::write_file(p, data);
        CHECK(coring_test::slurp(p) == data);
        const std::string back = co_await coring::read_file(p);
        CHECK(back.size() == size);
        CHECK(back == data);
    }
    // write_file replaces a longer file entirely.
    co_await coring::write_file(dir / "f0", std::string(5000, 'x'));
    co_await coring::write_file(dir / "f0", std::string_view("short"));
    const std::string s = co_await coring::read_file(dir / "f0");
    CHECK(s == "short");
}

TEST_CASE("whole file - write_file and read_file round trips from 0 bytes to several pieces", "[fs][whole_file]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    coring::run(round_trips(dir));
    CHECK(coring_test::open_fds() == fds);
}

task<> big_file(const temp_dir& dir) {
    const std::string p = dir / "big.bin";
    const std::size_t size = std::size_t{256} << 20;
    std::string data = coring_test::pattern_bytes(size);
    const std::uint64_t sum = coring_test::checksum_of(data);
    {
        file f = co_await file::open(p, open_mode::write | open_mode::create | open_mode::truncate);
        co_await f.write_all(data);
        CHECK(f.position() == size);
        co_await f.sync();
        const std::uint64_t on_disk = co_await f.size();
        CHECK(on_disk == size);
        co_await f.close();
    }
    data = std::string(); // the read below must not find the bytes anywhere but in the file
    const std::string back = co_await coring::read_file(p);
    CHECK(back.size() == size);
    CHECK(coring_test::checksum_of(back) == sum);
}

TEST_CASE("whole file - 256 MiB written with write_all, synced, read back with read_file: same checksum",
          "[fs][whole_file]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    coring::run(big_file(dir));
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("whole file - /proc files whose size reads 0 are read to their end", "[fs][whole_file]") {
    coring::run([]() -> task<> {
        const std::string status = co_await coring::read_file("/proc/self/status");
        CHECK(status.find("Name:") != std::string::npos);
        CHECK(status.find("VmRSS:") != std::string::npos);
        const std::string maps = co_await coring::read_file("/proc/self/maps");
        CHECK(maps.size() > 1000); // many mappings: more than one read
        CHECK(maps.back() == '\n');
        file f = co_await file::open("/proc/self/status", open_mode::read);
        const std::uint64_t size = co_await f.size();
        CHECK(size == 0);
    }());
}

/// While read_file runs, a thread keeps changing the file: appending (grow) or cutting it down (shrink). Whatever
/// the interleaving, the result is a prefix of the pattern, no byte is garbage, and nothing crashes.
task<> changing_size(const temp_dir& dir, bool grow) {
    const std::string p = dir / "changing";
    const std::size_t start = 24 << 20;
    coring_test::spit(p, coring_test::pattern_bytes(start));
    std::atomic<bool> stop{false};
    std::thread changer([&] {
        const int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
        std::size_t size = start;
        while (!stop.load()) {
            if (grow && size > start + (64 << 20)) {
                // grown enough: let the reads catch up with the end
            } else if (grow) {
                const std::string more = coring_test::pattern_bytes(256 * 1024, size);
                if (::pwrite(fd, more.data(), more.size(), static_cast<off_t>(size)) > 0) size += more.size();
            } else if (size > 4096) {
                size /= 2;
                if (::ftruncate(fd, static_cast<off_t>(size)) != 0) break;
            }
            std::this_thread::sleep_for(100us);
        }
        ::close(fd);
    });
    std::string got;
    for (int i = 0; i < 5; ++i) {
        got = co_await coring::read_file(p);
        const std::string expect = coring_test::pattern_bytes(got.size());
        CHECK(got == expect);
        if (grow) CHECK(got.size() >= start);
        else CHECK(got.size() <= start);
    }
    stop = true;
    changer.join();
}

TEST_CASE("whole file - a file that grows while read_file reads it", "[fs][whole_file]") {
    temp_dir dir;
    coring::run(changing_size(dir, true));
}

TEST_CASE("whole file - a file that shrinks while read_file reads it", "[fs][whole_file]") {
    temp_dir dir;
    coring::run(changing_size(dir, false));
}

task<> whole_file_errors(const temp_dir& dir) {
    int code = 0;
    std::string what;
    try {
        (void)co_await coring::read_file(dir / "missing");
    } catch (const std::system_error& e) {
        code = e.code().value();
        what = e.what();
    }
    CHECK(code == ENOENT);
    CHECK(what == "coring: open " + (dir / "missing") + ": No such file or directory");

    code = 0;
    try {
        (void)co_await coring::read_file(dir.path());
    } catch (const std::system_error& e) {
        code = e.code().value();
        what = e.what();
    }
    CHECK(code == EISDIR);
    CHECK(what.find(dir.path()) != std::string::npos);

    code = 0;
    try {
        co_await coring::write_file(dir / "no/dir/file", std::string_view("x"));
    } catch (const std::system_error& e) {
        code = e.code().value();
    }
    CHECK(code == ENOENT);
}

TEST_CASE("whole file - missing paths and directories are std::system_error naming the path", "[fs][whole_file]") {
    temp_dir dir;
    const int fds = coring_test::open_fds();
    coring::run(whole_file_errors(dir));
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("whole file - read_file and write_file cancelled half-way leave no descriptor and no hang",
          "[fs][whole_file]") {
    temp_dir dir;
    coring_test::spit(dir / "big", coring_test::pattern_bytes(64 << 20));
    const int fds = coring_test::open_fds();
    coring::run([](const temp_dir& d) -> task<> {
        const std::string data = coring_test::pattern_bytes(64 << 20);
        for (int i = 0; i < 20; ++i) {
            auto r = coring::spawn(coring::read_file(d / "big"));
            auto w = coring::spawn(coring::write_file(d / "out", data));
            for (int y = 0; y < i; ++y) co_await coring::yield_now();
            r.cancel();
            w.cancel();
            try {
                const std::string s = co_await r;
                CHECK(s.size() == (64u << 20)); // it finished first: then it is whole
            } catch (const coring::cancelled_error&) {}
            try {
                co_await w;
            } catch (const coring::cancelled_error&) {}
        }
    }(dir));
    CHECK(coring_test::open_fds() == fds);
}

} // namespace

namespace {

// The four ways callers name a path (issue 10): each must reach every call that takes one.
using coring_test::as_c_str;
using coring_test::as_fs_path;
using coring_test::as_string;
using coring_test::as_string_view;

} // namespace

TEMPLATE_TEST_CASE("whole file - read_file and write_file take a std::filesystem::path, std::string, std::string_view "
                   "or const char*",
                   "[fs][whole_file][path]", as_fs_path, as_string, as_string_view, as_c_str) {
    temp_dir dir;
    coring::run([](const temp_dir& d) -> task<> {
        const std::string p = d / "whole";
        co_await coring::write_file(TestType{}(p), "text");
        CHECK(coring_test::slurp(p) == "text");
        const std::string bytes = "bytes";
        co_await coring::write_file(TestType{}(p), std::as_bytes(std::span(bytes)));
        const std::string back = co_await coring::read_file(TestType{}(p));
        CHECK(back == "bytes");

        // The tasks keep their own copy: the caller's string is gone before they run.
        auto writing = coring::write_file(TestType{}(std::string(p)), "later");
        co_await std::move(writing);
        auto reading = coring::read_file(TestType{}(std::string(p)));
        const std::string later = co_await std::move(reading);
        CHECK(later == "later");
    }(dir));
}

} // namespace test_whole_file
