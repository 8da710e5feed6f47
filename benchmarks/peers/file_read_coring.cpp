// File reads the way fio measures them, for benchmarks/compare/file_vs_fio.py (which runs it beside fio's io_uring
// and psync engines on the same file, pinned to the same CPU):
//   file_read_coring PATH read|randread BLOCK_SIZE DEPTH SECONDS [direct]
// DEPTH tasks each keep one file::read_at in flight (fio's iodepth): sequential reads walk the file in BLOCK_SIZE
// steps (wrapping at the end, as fio's time_based run does), random reads pick block-aligned offsets uniformly.
// Prints: ios=... seconds=... iops=... mibs=...
#include <coring/coring.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

struct shared_state {
    std::uint64_t file_size = 0;
    std::size_t block = 0;
    bool random = false;
    bool stop = false;
    std::uint64_t next = 0; // the next sequential offset
    std::uint64_t ios = 0;
};

coring::task<> reader(coring::file& f, shared_state& s, unsigned seed) {
    coring::aligned_buffer buf(s.block);
    const std::uint64_t blocks = s.file_size / s.block;
    std::uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
    while (!s.stop) {
        std::uint64_t off;
        if (s.random) {
            x ^= x << 13; // xorshift64: cheap enough not to show next to a 4 KiB copy
            x ^= x >> 7;
            x ^= x << 17;
            off = (x % blocks) * s.block;
        } else {
            off = s.next;
            s.next = off + s.block >= blocks * s.block ? 0 : off + s.block;
        }
        const std::size_t n = co_await f.read_at(buf.span(), off);
        if (n != s.block) {
            std::fprintf(stderr, "file_read_coring: short read of %zu bytes at %llu\n", n,
                         static_cast<unsigned long long>(off));
            std::exit(1);
        }
        ++s.ios;
    }
}

coring::task<> stopper(shared_state& s, std::chrono::duration<double> d) {
    co_await coring::sleep(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
    s.stop = true;
}

coring::task<int> measure(std::string path, bool random, std::size_t block, unsigned depth, double seconds,
                          bool direct) {
    auto mode = coring::open_mode::read;
    if (direct) mode = mode | coring::open_mode::direct;
    coring::file f = co_await coring::file::open(path, mode);
    shared_state s;
    s.file_size = co_await f.size();
    s.block = block;
    s.random = random;
    if (s.file_size < block) {
        std::fprintf(stderr, "file_read_coring: %s is smaller than one block\n", path.c_str());
        co_return 1;
    }
    std::vector<coring::task<>> tasks;
    for (unsigned i = 0; i < depth; ++i) tasks.push_back(reader(f, s, i));
    tasks.push_back(stopper(s, std::chrono::duration<double>(seconds)));
    const auto t0 = clk::now();
    co_await coring::gather(std::move(tasks));
    const double elapsed = std::chrono::duration<double>(clk::now() - t0).count();
    const double iops = static_cast<double>(s.ios) / elapsed;
    std::printf("ios=%llu seconds=%.3f iops=%.0f mibs=%.1f\n", static_cast<unsigned long long>(s.ios), elapsed, iops,
                iops * static_cast<double>(block) / (1024.0 * 1024.0));
    co_await f.close();
    co_return 0;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 6) {
        std::fprintf(stderr, "usage: %s PATH read|randread BLOCK_SIZE DEPTH SECONDS [direct]\n", argv[0]);
        return 2;
    }
    const std::string rw = argv[2];
    if (rw != "read" && rw != "randread") {
        std::fprintf(stderr, "file_read_coring: pattern must be read or randread\n");
        return 2;
    }
    const long block = std::strtol(argv[3], nullptr, 10);
    const long depth = std::strtol(argv[4], nullptr, 10);
    const double seconds = std::strtod(argv[5], nullptr);
    if (block <= 0 || depth <= 0 || depth > 4096 || seconds <= 0) {
        std::fprintf(stderr, "file_read_coring: bad block size, depth or duration\n");
        return 2;
    }
    const bool direct = argc > 6 && std::strcmp(argv[6], "direct") == 0;
    try {
        return coring::run(measure(argv[1], rw == "randread", static_cast<std::size_t>(block),
                                   static_cast<unsigned>(depth), seconds, direct));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "file_read_coring: %s\n", e.what());
        return 1;
    }
}
