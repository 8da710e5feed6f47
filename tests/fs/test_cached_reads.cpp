// Cached reads (loop_options::cached_reads): a lone read of a buffered file is served from the page cache on the
// loop's thread with preadv2(RWF_NOWAIT); a miss, a file that refuses RWF_NOWAIT, a batch of reads and a cancelled
// task go the usual way. Runs on io_uring and (as every test) on epoll.

#include "support/fs_helpers.hpp"
#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace test_cached_reads {

using namespace std::chrono_literals;
using coring::file;
using coring::open_mode;
using coring::task;
using coring_test::temp_dir;

namespace {

constexpr std::size_t file_size = 1 << 20;
constexpr std::size_t block = 4096;

coring::loop_stats stats() { return coring::event_loop::current().stats(); }

/// Reads the whole file a block at a time, one read in flight (positional, then sequential), and checks every byte.
task<> read_back(const std::string& path, const std::string& content) {
    file f = co_await file::open(path, open_mode::read);
    std::string buf(block, '\0');
    for (std::size_t off = 0; off < content.size(); off += block) {
        const std::size_t n = co_await f.read_at(std::span(buf), off);
        REQUIRE(n == block);
        REQUIRE(buf == content.substr(off, block));
    }
    std::string all;
    for (;;) {
        const std::size_t n = co_await f.read(std::span(buf));
        if (n == 0) break;
        all.append(buf, 0, n);
    }
    CHECK(all == content);
    CHECK(f.position() == content.size());
}

/// Which pages of `path` are in the page cache (mincore); empty when that cannot be told.
std::vector<bool> resident_pages(const std::string& path) {
    std::vector<bool> out;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
        void* map = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
        if (map != MAP_FAILED) {
            const long page = ::sysconf(_SC_PAGESIZE);
            std::vector<unsigned char> r(static_cast<std::size_t>((st.st_size + page - 1) / page));
            if (::mincore(map, static_cast<std::size_t>(st.st_size), r.data()) == 0)
                for (unsigned char c : r) out.push_back((c & 1) != 0);
            ::munmap(map, static_cast<std::size_t>(st.st_size));
        }
    }
    ::close(fd);
    return out;
}

/// Whether every page of `path` has left the page cache (mincore), after asking the kernel to drop them.
bool evict(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
    const std::vector<bool> resident = resident_pages(path);
    return !resident.empty() && std::none_of(resident.begin(), resident.end(), [](bool r) { return r; });
}

/// Whether the file system under `path` serves RWF_NOWAIT reads (ext4, xfs, btrfs do; tmpfs and overlayfs on some
/// kernels, NFS, FUSE do not, and there the path is never taken). Reads the first byte twice, the second cached.
bool nowait_served(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char c;
    iovec iov{&c, 1};
    const bool ok = ::pread(fd, &c, 1, 0) == 1 && ::preadv2(fd, &iov, 1, 0, RWF_NOWAIT) == 1;
    ::close(fd);
    return ok;
}

} // namespace

/// Leaves the test case, saying why, where the file system has no RWF_NOWAIT reads to serve.
#define REQUIRE_NOWAIT_SERVED(path)                                                                                    \
    do {                                                                                                               \
        if (!nowait_served(path)) {                                                                                    \
            WARN("the file system of " << (path) << " refuses RWF_NOWAIT reads: cached reads are not exercised");      \
            return;                                                                                                    \
        }                                                                                                              \
    } while (false)

TEST_CASE("cached reads - lone reads of a cached file are served on the loop's thread with the same bytes",
          "[fs][cached]") {
    temp_dir dir;
    const std::string p = dir / "cached.bin";
    const std::string content = coring_test::pattern_bytes(file_size);
    coring_test::spit(p, content);
    REQUIRE_NOWAIT_SERVED(p);
    const int fds = coring_test::open_fds();
    coring::run([](std::string p, const std::string& content) -> task<> {
        const coring::loop_stats before = stats();
        co_await read_back(p, content);
        // 513 reads (256 positional, 256 sequential, and the one at the end): nearly all served from the page cache.
        // Every 33rd of a run is sent the usual way (the inline budget), so that the loop turns.
        CHECK(stats().cached_reads - before.cached_reads >= 400);
    }(p, content));
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("cached reads - a read of more than 256 KiB goes the usual way", "[fs][cached]") {
    temp_dir dir;
    const std::string p = dir / "large.bin";
    const std::string content = coring_test::pattern_bytes(file_size);
    coring_test::spit(p, content);
    REQUIRE_NOWAIT_SERVED(p);
    coring::run([](std::string p, const std::string& content) -> task<> {
        file f = co_await file::open(p, open_mode::read);
        const std::uint64_t before = stats().cached_reads;
        std::string big(256 * 1024 + 1, '\0');
        const std::size_t n = co_await f.read_at(std::span(big), 0);
        CHECK(n == big.size());
        CHECK(big == content.substr(0, big.size()));
        CHECK(stats().cached_reads == before);
        std::string small(256 * 1024, '\0'); // the largest that is tried
        const std::size_t m = co_await f.read_at(std::span(small), 1);
        CHECK(m == small.size());
        CHECK(small == content.substr(1, small.size()));
        CHECK(stats().cached_reads == before + 1);
    }(p, content));
}

TEST_CASE("cached reads - turned off every read goes the usual way with the same bytes", "[fs][cached]") {
    temp_dir dir;
    const std::string p = dir / "plain.bin";
    const std::string content = coring_test::pattern_bytes(file_size);
    coring_test::spit(p, content);
    coring::loop_options o;
    o.cached_reads = false;
    coring::run(
        [](std::string p, const std::string& content) -> task<> {
            co_await read_back(p, content);
            CHECK(stats().cached_reads == 0);
            CHECK(stats().cached_read_misses == 0);
        }(p, content),
        o);
}

TEST_CASE("cached reads - reads in flight together go through the ring in one batch and not on the loop's thread",
          "[fs][cached]") {
    temp_dir dir;
    const std::string p = dir / "batch.bin";
    const std::string content = coring_test::pattern_bytes(file_size);
    coring_test::spit(p, content);
    REQUIRE_NOWAIT_SERVED(p);
    coring::run([](std::string p, const std::string& content) -> task<> {
        file f = co_await file::open(p, open_mode::read);
        const std::uint64_t before = stats().cached_reads;
        std::vector<std::string> bufs(16, std::string(block, '\0'));
        std::vector<task<std::size_t>> reads;
        for (std::size_t i = 0; i < bufs.size(); ++i)
            reads.push_back([](file& f, std::string& b, std::uint64_t off) -> task<std::size_t> {
                co_return co_await f.read_at(std::span(b), off);
            }(f, bufs[i], i * 3 * block));
        const std::vector<std::size_t> got = co_await coring::gather(std::move(reads));
        for (std::size_t i = 0; i < bufs.size(); ++i) {
            CHECK(got[i] == block);
            CHECK(bufs[i] == content.substr(i * 3 * block, block));
        }
        // On io_uring the first read of the batch sees the others ready to run, the last sees their SQEs waiting:
        // none is lone. On epoll the last could be (the others went to worker threads), and one is allowed there.
        if (coring::event_loop::current().backend() == coring::backend::io_uring) CHECK(stats().cached_reads == before);
        else CHECK(stats().cached_reads <= before + 1);
    }(p, content));
}

TEST_CASE("cached reads - a task whose reads always hit still lets timers and other tasks run", "[fs][cached]") {
    temp_dir dir;
    const std::string p = dir / "spin.bin";
    coring_test::spit(p, coring_test::pattern_bytes(block));
    REQUIRE_NOWAIT_SERVED(p);
    coring::run([](std::string p) -> task<> {
        file f = co_await file::open(p, open_mode::read);
        bool stop = false;
        // Without the inline budget this reader would never suspend, and the sleeper would never wake.
        auto stopper = coring::spawn([](bool& stop) -> task<> {
            co_await coring::sleep(20ms);
            stop = true;
        }(stop));
        std::uint64_t reads = 0;
        std::string buf(block, '\0');
        while (!stop) {
            const std::size_t n = co_await f.read_at(std::span(buf), 0);
            REQUIRE(n == block);
            ++reads;
        }
        co_await stopper;
        CHECK(reads > 0);
        CHECK(stats().cached_reads > 0);
    }(p));
}

TEST_CASE("cached reads - a file not in the page cache is read through the usual way", "[fs][cached]") {
    temp_dir dir;
    const std::string p = dir / "cold.bin";
    const std::string content = coring_test::pattern_bytes(file_size);
    coring_test::spit(p, content);
    REQUIRE_NOWAIT_SERVED(p);
    if (!evict(p)) {
        // tmpfs (and some VMs' shared folders) keep every page: there is no miss to make.
        WARN("the page cache kept " << p << ": the miss is not exercised here");
        return;
    }
    coring::run([](std::string p, const std::string& content) -> task<> {
        const coring::loop_stats before = stats();
        file f = co_await file::open(p, open_mode::read);
        std::string buf(block, '\0');
        // Far apart, so that readahead of one does not bring in the next: misses, each read by the ring or a worker.
        for (std::size_t off = 0; off < content.size(); off += 64 * block) {
            const std::size_t n = co_await f.read_at(std::span(buf), off);
            REQUIRE(n == block);
            REQUIRE(buf == content.substr(off, block));
        }
        const coring::loop_stats after = stats();
        CHECK(after.cached_read_misses - before.cached_read_misses >= 1);
        // Then the same blocks again, now cached: served (a fresh file: this one is skipping tries after its misses).
        file again = co_await file::open(p, open_mode::read);
        for (std::size_t off = 0; off < content.size(); off += 64 * block) {
            const std::size_t n = co_await again.read_at(std::span(buf), off);
            REQUIRE(n == block);
            REQUIRE(buf == content.substr(off, block));
        }
        CHECK(stats().cached_reads > after.cached_reads);
    }(p, content));
}

TEST_CASE("cached reads - a read whose start is cached and rest is not returns all of it", "[fs][cached]") {
    temp_dir dir;
    const std::string p = dir / "half.bin";
    const std::string content = coring_test::pattern_bytes(file_size);
    coring_test::spit(p, content);
    REQUIRE_NOWAIT_SERVED(p);
    if (!evict(p)) {
        WARN("the page cache kept " << p << ": a partly cached read is not exercised here");
        return;
    }
    // Only the first page back in the cache: a read of it alone, with readahead off.
    {
        const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
        char one[block];
        REQUIRE(::pread(fd, one, block, 0) == static_cast<ssize_t>(block));
        ::close(fd);
    }
    const std::vector<bool> res = resident_pages(p);
    if (res.size() < 16 || !res[0] || res[1]) {
        WARN("the kernel cached more than the first page of " << p << ": a partly cached read is not exercised");
        return;
    }
    coring::run([](std::string p, const std::string& content) -> task<> {
        file f = co_await file::open(p, open_mode::read);
        ::posix_fadvise(f.native_handle(), 0, 0, POSIX_FADV_RANDOM);
        const coring::loop_stats before = stats();
        // Sequential, so that the position shows the whole count too: 4 KiB from the cache, the rest from the disk.
        std::string buf(16 * block, '\0');
        const std::size_t n = co_await f.read(std::span(buf));
        CHECK(n == buf.size());
        CHECK(buf == content.substr(0, buf.size()));
        CHECK(f.position() == buf.size());
        CHECK(stats().cached_reads == before.cached_reads + 1);
    }(p, content));
}

TEST_CASE("cached reads - a FIFO and a file open for writing and an adopted O_DIRECT descriptor are read the usual way",
          "[fs][cached]") {
    temp_dir dir;
    const std::string fifo = dir / "fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const std::string p = dir / "data.bin";
    const std::string content = coring_test::pattern_bytes(64 * block);
    coring_test::spit(p, content);
    const int fds = coring_test::open_fds();
    coring::run([](std::string fifo, std::string p, const std::string& content) -> task<> {
        // A FIFO has no offsets: RWF_NOWAIT at one is ESPIPE, and the file is not tried again.
        {
            // The writer first (O_RDWR never waits for a reader), so that no open waits for the other end (epoll
            // opens on a worker thread, where open(2) waits).
            const int w = ::open(fifo.c_str(), O_RDWR | O_CLOEXEC);
            REQUIRE(w >= 0);
            REQUIRE(::write(w, "abc", 3) == 3);
            file r = co_await file::open(fifo, open_mode::read);
            const coring::loop_stats before = stats();
            char buf[8];
            const std::size_t n = co_await r.read(std::span(buf));
            CHECK(std::string(buf, n) == "abc");
            ::close(w);
            const std::size_t end = co_await r.read(std::span(buf));
            CHECK(end == 0);
            CHECK(stats().cached_reads == before.cached_reads);
            CHECK(stats().cached_read_misses == before.cached_read_misses);
        }
        // Open for writing only: the usual read reports EBADF, naming the path.
        {
            file w = co_await file::open(p, open_mode::write);
            char buf[8];
            const coring_test::io_failure e = co_await coring_test::failure_of(w.read_at(std::span(buf), 0));
            CHECK(e.code == EBADF);
            CHECK(e.what.find("read " + p) != std::string::npos);
        }
        // Adopted with O_DIRECT: a direct read waits for the device even with RWF_NOWAIT, so it is never tried.
        const int fd = ::open(p.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
        if (fd < 0) {
            WARN("O_DIRECT is refused here (" << std::strerror(errno) << "): that case is not exercised");
            co_return;
        }
        file d(fd, p);
        coring::aligned_buffer buf(block);
        const std::uint64_t before = stats().cached_reads;
        const std::size_t n = co_await d.read_at(buf.span(), block);
        CHECK(n == block);
        CHECK(std::string(reinterpret_cast<const char*>(buf.span().data()), block) == content.substr(block, block));
        CHECK(stats().cached_reads == before);
    }(fifo, p, content));
    CHECK(coring_test::open_fds() == fds);
}

namespace {

/// Meets its cancellation in a sleep, swallows it, then reads: the read must be cancelled, not served.
task<> read_after_cancel(file& f, bool& cancelled, bool& read) {
    try {
        co_await coring::sleep(10s);
    } catch (const coring::cancelled_error&) {}
    std::string buf(block, '\0');
    try {
        (void)co_await f.read_at(std::span(buf), 0);
        read = true;
    } catch (const coring::cancelled_error&) {
        cancelled = true;
    }
}

} // namespace

TEST_CASE("cached reads - a cancelled task's read ends with cancelled_error and not with cached bytes",
          "[fs][cached]") {
    temp_dir dir;
    const std::string p = dir / "cancel.bin";
    coring_test::spit(p, coring_test::pattern_bytes(block));
    coring::run([](std::string p) -> task<> {
        file f = co_await file::open(p, open_mode::read);
        bool cancelled = false, read = false;
        auto h = coring::spawn(read_after_cancel(f, cancelled, read));
        co_await coring_test::settle();
        h.cancel();
        co_await h;
        CHECK(cancelled);
        CHECK_FALSE(read);
    }(p));
}

} // namespace test_cached_reads
