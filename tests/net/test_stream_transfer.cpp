// Bulk transfers: short reads and writes on tiny socket buffers, and 64 MiB each way at once, checked end to end.

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace test_stream_transfer {

using namespace std::chrono_literals;
using coring::task;
using coring_test::for_each_family;

namespace {

struct sent_or_received {
    std::uint64_t sum = 0;
    std::uint64_t bytes = 0;
};

/// Sends `total` bytes of pattern(seed) in write_all()s of `chunk` bytes (a multiple of 8), then half-closes.
task<sent_or_received> send_pattern(coring::stream& s, std::uint64_t seed, std::size_t total, std::size_t chunk) {
    coring_test::pattern p(seed);
    coring_test::checksum sum;
    std::vector<std::byte> buf(chunk);
    for (std::size_t sent = 0; sent < total;) {
        const std::size_t n = std::min(chunk, total - sent);
        const std::span<std::byte> piece = std::span(buf).first(n);
        p.fill(piece);
        sum.update(piece);
        const std::size_t w = co_await s.write_all(piece);
        CHECK(w == n);
        sent += n;
    }
    co_await s.shutdown();
    co_return sent_or_received{sum.value(), sum.bytes()};
}

/// Reads to the end of the stream in reads of varying sizes (read() and read_exact()), checksumming what arrives.
task<sent_or_received> receive_all(coring::stream& s, std::size_t max_read, std::uint64_t seed) {
    coring_test::checksum sum;
    std::vector<std::byte> buf(max_read);
    std::uint64_t r = seed | 1;
    for (;;) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        const std::size_t want = 1 + r % max_read;
        const std::span<std::byte> into = std::span(buf).first(want);
        if (r % 4 == 0) {
            // A read_exact now and then: at the end it gives back the incomplete rest, which read() then returns.
            bool incomplete = false;
            try {
                co_await s.read_exact(into);
            } catch (const coring::incomplete_read_error&) {
                incomplete = true;
            }
            if (!incomplete) {
                sum.update(into);
                continue;
            }
        }
        const std::size_t n = co_await s.read(into);
        if (n == 0) break;
        sum.update(into.first(n));
    }
    co_return sent_or_received{sum.value(), sum.bytes()};
}

template <class F>
task<> tiny_buffers(F fam) {
    {
        auto [c, s] = co_await coring_test::connect_pair(fam);
        coring_test::shrink_buffers(c, 4096);
        coring_test::shrink_buffers(s, 4096);
        // Nobody reads yet: one write() takes what fits and says how much, far less than asked.
        coring_test::pattern p(7);
        const std::string big = p.text(4 << 20);
        const std::size_t w = co_await c.write(big);
        INFO("one write() of 4 MiB into 4 KiB buffers sent " << w << " bytes");
        CHECK(w > 0);
        CHECK(w < big.size());
        std::string prefix(w, '\0');
        co_await s.read_exact(std::span(prefix));
        CHECK(prefix == big.substr(0, w));
    }
    {
        // write_all of 8 MiB through a 4 KiB send buffer (thousands of short sends), against a reader reading in
        // small random pieces. Over TCP the receiving end keeps 32 KiB (see small_buffers: with 4 KiB, loopback
        // TCP moves about 50 KiB/s in the kernel itself, so 8 MiB would take minutes; with 16 KiB too under QEMU).
        auto [c, s] = co_await coring_test::connect_pair(fam);
        coring_test::small_buffers(c);
        coring_test::small_buffers(s);
        const auto [sent, received] =
            co_await coring::gather(send_pattern(c, 99, 8 << 20, 1 << 20), receive_all(s, 5000, 3));
        CHECK(sent.bytes == (8u << 20));
        CHECK(received.bytes == sent.bytes);
        CHECK(received.sum == sent.sum);
    }
}

template <class F>
task<> both_ways(F fam, std::size_t total) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    // Four tasks: each end writes and reads at the same time.
    const auto [c_sent, c_received, s_sent, s_received] =
        co_await coring::gather(send_pattern(c, 1, total, 1 << 20), receive_all(c, 256 * 1024, 11),
                                send_pattern(s, 2, total, 256 * 1024), receive_all(s, 64 * 1024, 12));
    CHECK(c_sent.bytes == total);
    CHECK(s_sent.bytes == total);
    CHECK(s_received.bytes == c_sent.bytes);
    CHECK(s_received.sum == c_sent.sum);
    CHECK(c_received.bytes == s_sent.bytes);
    CHECK(c_received.sum == s_sent.sum);
    CHECK(c_sent.sum != s_sent.sum); // two different streams, not the same bytes twice
}

} // namespace

TEST_CASE("stream - tiny socket buffers: a write is short, write_all of several MiB completes", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(tiny_buffers(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - 64 MiB each way at the same time arrive whole (checksums on both sides)", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(both_ways(fam, 64u << 20)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - checksum and pattern helpers: the same bytes give the same sum however split", "[net][stream]") {
    coring_test::pattern p(5);
    const std::string data = p.text(1000);
    coring_test::checksum whole;
    whole.update(data);
    for (std::size_t step : {1u, 3u, 7u, 8u, 9u, 999u}) {
        coring_test::checksum pieces;
        for (std::size_t at = 0; at < data.size(); at += step) pieces.update(std::string_view(data).substr(at, step));
        CHECK(pieces.value() == whole.value());
        CHECK(pieces.bytes() == 1000);
    }
    coring_test::checksum changed;
    std::string other = data;
    std::swap(other[10], other[20]);
    changed.update(other);
    CHECK(changed.value() != whole.value());
    coring_test::checksum shorter;
    shorter.update(std::string_view(data).substr(0, 999));
    CHECK(shorter.value() != whole.value());
}

} // namespace test_stream_transfer
