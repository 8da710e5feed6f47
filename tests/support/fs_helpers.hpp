#pragma once

// Fixtures for the file tests: a scratch directory removed afterwards (support/temp_dir.hpp), synchronous reads and
// writes to check what coring did, and a deterministic byte pattern with a checksum.

#include "support/temp_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coring_test {

/// The content of a file, read with plain system calls ("" when it cannot be opened).
inline std::string slurp(const std::string& path) {
    std::string out;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    char buf[65536];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return out;
}

/// Writes a file with plain system calls.
inline void spit(const std::string& path, std::string_view data) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot create " + path);
    for (std::size_t done = 0; done < data.size();) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n <= 0) throw std::runtime_error("cannot write " + path);
        done += static_cast<std::size_t>(n);
    }
    ::close(fd);
}

/// Runs `check` (which returns true on success) in a forked child that has dropped root's privileges to uid and gid
/// 65534 (nobody), for permission tests that root would pass by bypassing the checks. The child makes its own event
/// loop. Returns 0 when the check passed, 1 when it failed, -1 when privileges could not be dropped (skip).
template <class Check>
int as_nobody(Check check) {
    const pid_t pid = ::fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
        int status = 1;
        try {
            status = check() ? 0 : 1;
        } catch (...) {
            status = 1;
        }
        ::_exit(status);
    }
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 1;
    if (WEXITSTATUS(status) == 3) return -1;
    return WEXITSTATUS(status) == 0 ? 0 : 1;
}

/// Whether a path exists.
inline bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

/// A byte pattern that differs at every offset a test looks at: byte i is byte i % 8 of a hash of i / 8, so that
/// hundreds of MiB are generated quickly (word at a time) even in sanitizer builds.
inline std::uint64_t pattern_word(std::uint64_t w) {
    std::uint64_t x = (w + 1) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return x * 0xBF58476D1CE4E5B9ull;
}
inline char pattern_byte(std::uint64_t i) { return static_cast<char>((pattern_word(i / 8) >> (8 * (i % 8))) & 0xff); }

/// `n` pattern bytes starting at offset `from`.
inline std::string pattern_bytes(std::size_t n, std::uint64_t from = 0) {
    std::string s(n, '\0');
    std::size_t i = 0;
    for (; i < n && (from + i) % 8 != 0; ++i) s[i] = pattern_byte(from + i);
    for (; i + 8 <= n; i += 8) {
        const std::uint64_t w = pattern_word((from + i) / 8); // little-endian: byte k of w is byte k of the word
        std::memcpy(s.data() + i, &w, 8);
    }
    for (; i < n; ++i) s[i] = pattern_byte(from + i);
    return s;
}

/// A checksum of bytes (FNV-1a over 8-byte words, then the tail).
inline std::uint64_t checksum_of(std::string_view s) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    std::size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
        std::uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < s.size(); ++i) h = (h ^ static_cast<unsigned char>(s[i])) * 0x100000001b3ull;
    return h;
}

} // namespace coring_test
