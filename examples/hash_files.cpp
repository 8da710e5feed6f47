// Hashes every file of a directory tree, many files at a time: bounded concurrency over a work list.
//
//   hash_files DIR [--concurrency N]      default: 16 files at a time
//
// Prints "<FNV-1a 64-bit hash, 16 hex digits>  <path>" for every regular file under DIR (recursively; symbolic links
// are not followed, as with `find DIR -type f`), sorted by path, then the number of files, the bytes read, the time
// taken and the rate. Check one with Python:
//   python3 -c 'import sys;h=0xcbf29ce484222325
//   for b in open(sys.argv[1],"rb").read(): h=((h^b)*0x100000001b3)%2**64
//   print("%016x"%h)' FILE
//
// N worker tasks pull the next file from a shared list, so at most N files are open at once, whatever the size of the
// tree. Each reads its file in 256 KiB pieces with read_at: memory stays at N buffers even for huge files. A file that
// cannot be read is reported on stderr and skipped; the exit status is then 1.
//
// Listing the tree uses std::filesystem: reading a directory is no io_uring operation (there is no getdents opcode).
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
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace fs = std::filesystem;

constexpr std::size_t piece = 256 * 1024;

// FNV-1a, 64 bits (http://www.isthe.com/chongo/tech/comp/fnv/): not cryptographic, but a byte at a time and simple
// enough to check by hand. Continue a hash by passing the previous value as `h`.
constexpr std::uint64_t fnv1a_offset = 0xcbf29ce484222325;
constexpr std::uint64_t fnv1a(std::span<const std::byte> data, std::uint64_t h = fnv1a_offset) {
    for (const std::byte b : data) h = (h ^ std::to_integer<std::uint64_t>(b)) * 0x100000001b3;
    return h;
}

struct result {
    std::uint64_t hash = 0;
    std::uint64_t bytes = 0;
    bool ok = false;
};

// The work list and its results. Only the event loop's thread touches it: no lock needed for `next`.
struct work {
    const std::vector<std::string>* paths;
    std::vector<result>* results; // results[i] belongs to paths[i]
    std::size_t next;             // the first file no worker has taken yet
};

// Hashes one file, piece by piece: reading piece i+1 waits for hashing piece i, but the other workers' reads are in
// flight meanwhile, which is where the concurrency comes from.
coring::task<result> hash_file(std::string path, std::span<std::byte> buf) {
    coring::file f = co_await coring::file::open(path, coring::open_mode::read);
    result r{fnv1a_offset, 0, true};
    for (;;) {
        const std::size_t n = co_await f.read_at(buf, r.bytes);
        if (n == 0) break;
        r.hash = fnv1a(buf.first(n), r.hash);
        r.bytes += n;
    }
    co_await f.close();
    co_return r;
}

// One of the N workers: takes the next file until none is left. (`w` points into hash_all()'s frame, which awaits
// every worker: it outlives them.)
coring::task<> worker(work* w) {
    const auto buf = std::make_unique_for_overwrite<std::byte[]>(piece);
    while (w->next < w->paths->size()) {
        const std::size_t i = w->next++;
        const std::string& path = (*w->paths)[i];
        try {
            (*w->results)[i] = co_await hash_file(path, std::span(buf.get(), piece));
        } catch (const std::system_error& e) {
            // One unreadable file (permissions, I/O error, removed since the listing) must not stop the others.
            std::fprintf(stderr, "hash_files: %s: %s\n", path.c_str(), e.code().message().c_str());
        }
    }
}

coring::task<> hash_all(const std::vector<std::string>* paths, std::vector<result>* results, std::size_t concurrency) {
    work w{paths, results, 0};
    std::vector<coring::task<>> workers;
    for (std::size_t i = 0; i < std::min(concurrency, paths->size()); ++i) workers.push_back(worker(&w));
    co_await coring::gather(std::move(workers));
}

// Appends the regular files under `dir` to `out`. A directory that cannot be listed is reported and skipped, like an
// unreadable file. Returns false when something could not be listed.
bool list_files(const fs::path& dir, std::vector<std::string>& out) {
    bool complete = true;
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) {
        std::fprintf(stderr, "hash_files: %s: %s\n", dir.c_str(), ec.message().c_str());
        return false;
    }
    for (const fs::directory_iterator end; it != end; it.increment(ec)) {
        if (ec) {
            std::fprintf(stderr, "hash_files: %s: %s\n", dir.c_str(), ec.message().c_str());
            return false;
        }
        // symlink_status: a link to a directory could lead back up the tree, and `find -type f` skips links too.
        const fs::file_type type = it->symlink_status(ec).type();
        if (type == fs::file_type::directory) complete = list_files(it->path(), out) && complete;
        else if (type == fs::file_type::regular) out.push_back(it->path().string());
    }
    return complete;
}

// Parses an integer in [lo, hi]; false when the text is not one.
bool parse(std::string_view text, unsigned long lo, unsigned long hi, unsigned long& out) {
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && out >= lo && out <= hi;
}

int main(int argc, char** argv) {
    const char* dir = nullptr;
    unsigned long concurrency = 16;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--concurrency" && i + 1 < argc && parse(argv[i + 1], 1, 65536, concurrency)) {
            ++i;
        } else if (!dir && !(arg.starts_with("-") && arg.size() > 1)) {
            dir = argv[i];
        } else {
            dir = nullptr;
            break;
        }
    }
    if (!dir) {
        std::fputs("usage: hash_files DIR [--concurrency N]\n"
                   "       N: files hashed at a time, 1 to 65536 (default 16)\n",
                   stderr);
        return 2;
    }

    const auto start = std::chrono::steady_clock::now();
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        std::fprintf(stderr, "hash_files: %s: %s\n", dir,
                     (ec ? ec : std::make_error_code(std::errc::not_a_directory)).message().c_str());
        return 1;
    }
    std::vector<std::string> paths;
    bool complete = list_files(dir, paths);
    // Sorted before hashing, so that the results come out in order without a second sort.
    std::sort(paths.begin(), paths.end());

    std::vector<result> results(paths.size());
    try {
        coring::run(hash_all(&paths, &results, concurrency));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hash_files: %s\n", e.what());
        return 1;
    }
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;

    std::size_t files = 0;
    std::uint64_t bytes = 0;
    for (std::size_t i = 0; i < paths.size(); ++i) {
        if (!results[i].ok) {
            complete = false;
            continue;
        }
        std::printf("%016llx  %s\n", static_cast<unsigned long long>(results[i].hash), paths[i].c_str());
        ++files;
        bytes += results[i].bytes;
    }
    const double mib = static_cast<double>(bytes) / (1 << 20);
    std::printf("%zu files, %llu bytes (%.1f MiB) in %.1f ms: %.1f MiB/s\n", files,
                static_cast<unsigned long long>(bytes), mib, elapsed.count() * 1000,
                elapsed.count() > 0 ? mib / elapsed.count() : 0.0);
    return complete ? 0 : 1;
}
