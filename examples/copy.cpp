// Copies a file with several reads in flight at once: a small `cp` whose reads and writes are io_uring operations.
//
//   copy SRC DST [--depth N] [--block-size BYTES]      defaults: 8 blocks of 1 MiB (1048576 bytes) in flight
//
// N worker tasks share one "next offset" counter: each takes the next block, reads it with read_at and writes it to
// the same offset of DST with write_all_at, so up to N blocks are on their way at any time. That keeps a fast SSD's
// queue busy, where a read-then-write loop would leave the device idle while it waits for each block in turn.
// DST is created or truncated, and synced to the device (fsync) before the program reports success. Prints the bytes
// copied, the time taken and the rate.
#include <coring/coring.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

// What the workers share. Only the event loop's thread touches it: no lock needed for `next`.
struct copy_job {
    coring::file* src;
    coring::file* dst;
    std::uint64_t size;  // SRC's size when the copy started
    std::size_t block;   // bytes per read
    std::uint64_t next;  // the first byte no worker has taken yet
    std::uint64_t ended; // where a read met the end of SRC before `size`: the file shrank under us
};

// One of the N workers: copies blocks until none is left. (`job` points into copy_file()'s frame, which awaits every
// worker: it outlives them.)
coring::task<> worker(copy_job* job) {
    // Not zero-filled: every byte written is first read into it.
    const auto buf = std::make_unique_for_overwrite<std::byte[]>(job->block);
    while (job->next < job->size) {
        // Take the block before the first co_await: the other workers run while this one waits.
        const std::uint64_t offset = job->next;
        const auto len = static_cast<std::size_t>(std::min<std::uint64_t>(job->block, job->size - offset));
        job->next += len;

        // A read may be short before the end of the file (network and FUSE file systems, signals): read on.
        const std::span<std::byte> block(buf.get(), len);
        std::size_t got = 0;
        while (got < len) {
            const std::size_t n = co_await job->src->read_at(block.subspan(got), offset + got);
            if (n == 0) break;
            got += n;
        }
        co_await job->dst->write_all_at(block.first(got), offset);
        if (got < len) {
            job->ended = std::min(job->ended, offset + got);
            co_return;
        }
    }
}

// Opens both files, copies with `depth` workers, syncs and closes. Returns the bytes copied.
coring::task<std::uint64_t> copy_file(std::string src_path, std::string dst_path, std::size_t depth,
                                      std::size_t block) {
    // The system's messages name the operation and the file; say which of the two files could not be opened.
    coring::file src;
    try {
        src = co_await coring::file::open(src_path, coring::open_mode::read);
    } catch (const std::system_error& e) {
        throw std::runtime_error("cannot open " + src_path + ": " + e.code().message());
    }
    const std::uint64_t size = co_await src.size();
    coring::file dst;
    try {
        dst = co_await coring::file::open(dst_path, coring::open_mode::write | coring::open_mode::create |
                                                        coring::open_mode::truncate);
    } catch (const std::system_error& e) {
        throw std::runtime_error("cannot create " + dst_path + ": " + e.code().message());
    }

    copy_job job{&src, &dst, size, block, 0, size};
    // No more workers than blocks: an idle worker would only allocate a buffer.
    const std::uint64_t blocks = (size + block - 1) / block;
    std::vector<coring::task<>> workers;
    for (std::uint64_t i = 0; i < std::min<std::uint64_t>(depth, blocks); ++i) workers.push_back(worker(&job));
    // The first failure (a read or write error) cancels the other workers, waits for them, and is rethrown here.
    co_await coring::gather(std::move(workers));
    if (job.ended < size)
        throw std::runtime_error(src_path + " shrank from " + std::to_string(size) + " to " +
                                 std::to_string(job.ended) + " bytes during the copy: " + dst_path +
                                 " is no faithful copy");

    // statx knows no size for /proc files (0), and the file may have grown since: read on until a read returns 0.
    std::uint64_t copied = size;
    const auto buf = std::make_unique_for_overwrite<std::byte[]>(block);
    for (;;) {
        const std::size_t n = co_await src.read_at(std::span(buf.get(), block), copied);
        if (n == 0) break;
        co_await dst.write_all_at(std::span(buf.get(), n), copied);
        copied += n;
    }

    co_await dst.sync();  // success means "on the device", not "in the page cache"
    co_await dst.close(); // close reports delayed write errors (NFS): await it rather than leave it to the destructor
    co_await src.close();
    co_return copied;
}

// Parses an integer in [lo, hi]; false when the text is not one.
bool parse(std::string_view text, unsigned long long lo, unsigned long long hi, unsigned long long& out) {
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && out >= lo && out <= hi;
}

int usage() {
    std::fputs("usage: copy SRC DST [--depth N] [--block-size BYTES]\n"
               "       N: reads in flight, 1 to 1024 (default 8); BYTES: per read, 1 to 1073741824 (default 1048576)\n",
               stderr);
    return 2;
}

int main(int argc, char** argv) {
    std::vector<std::string> paths;
    unsigned long long depth = 8, block = 1 << 20;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--depth" || arg == "--block-size") {
            if (i + 1 == argc) return usage();
            const bool ok = arg == "--depth" ? parse(argv[++i], 1, 1024, depth) : parse(argv[++i], 1, 1 << 30, block);
            if (!ok) return usage();
        } else if (arg.starts_with("-") && arg.size() > 1) {
            return usage();
        } else {
            paths.emplace_back(arg);
        }
    }
    if (paths.size() != 2) return usage();

    // Checked before DST is opened, because opening it truncates it: copying a file onto itself would destroy it, and
    // a directory as SRC would leave an empty DST behind.
    std::error_code ec;
    if (std::filesystem::equivalent(paths[0], paths[1], ec)) {
        std::fprintf(stderr, "copy: %s and %s are the same file\n", paths[0].c_str(), paths[1].c_str());
        return 1;
    }
    if (std::filesystem::is_directory(paths[0], ec)) {
        std::fprintf(stderr, "copy: %s is a directory\n", paths[0].c_str());
        return 1;
    }

    try {
        const auto start = std::chrono::steady_clock::now();
        const std::uint64_t copied = coring::run(copy_file(paths[0], paths[1], depth, block));
        const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
        const double mib = static_cast<double>(copied) / (1 << 20);
        std::printf("copied %llu bytes (%.1f MiB) in %.1f ms: %.1f MiB/s (depth %llu, blocks of %llu bytes)\n",
                    static_cast<unsigned long long>(copied), mib, elapsed.count() * 1000,
                    elapsed.count() > 0 ? mib / elapsed.count() : 0.0, depth, block);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "copy: %s\n", e.what());
        return 1;
    }
}
