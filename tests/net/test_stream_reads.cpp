// read, read_exact and read_until over every socket family (TCP over IPv4 and IPv6, Unix paths and abstract names).

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace test_stream_reads {

using namespace std::chrono_literals;
using coring::task;
using coring_test::for_each_family;

namespace {

template <class F>
task<> read_returns_what_arrived(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    co_await c.write_all("0123456789");
    co_await coring::sleep(5ms); // all ten bytes are there now
    char buf[64];
    const std::size_t n = co_await s.read(std::span(buf));
    CHECK(std::string(buf, n) == "0123456789"); // what arrived, not a full buffer

    co_await c.write_all("abcdef");
    char four[4];
    co_await s.read_exact(std::span(four));
    CHECK(std::string(four, 4) == "abcd");
    char two[2];
    const std::size_t m = co_await s.read(std::span(two));
    CHECK(std::string(two, m) == "ef");

    // read_exact waits for bytes that come in several pieces.
    auto writer = coring::spawn(coring_test::send_pieces(c, {"12", "345", "6789", "0"}, 2ms, true));
    char ten[10];
    co_await s.read_exact(std::span(ten));
    CHECK(std::string(ten, 10) == "1234567890");
    co_await writer;
    const std::size_t end = co_await s.read(std::span(buf));
    CHECK(end == 0);
    const std::size_t again = co_await s.read(std::span(buf));
    CHECK(again == 0); // the end stays the end
}

template <class F>
task<> read_exact_at_the_end(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    co_await c.write_all("12345");
    co_await c.shutdown();
    char buf[10];
    std::size_t expected = 0, received = 0;
    try {
        co_await s.read_exact(std::span(buf));
    } catch (const coring::incomplete_read_error& e) {
        expected = e.expected();
        received = e.received();
    }
    CHECK(expected == 10);
    CHECK(received == 5);
    // The five bytes stay in the stream.
    CHECK(s.buffered() == 5);
    const std::size_t n = co_await s.read(std::span(buf));
    CHECK(std::string(buf, n) == "12345");
    const std::size_t end = co_await s.read(std::span(buf));
    CHECK(end == 0);
    CHECK_THROWS_AS(co_await s.read_exact(std::span(buf).first(1)), coring::incomplete_read_error);
}

template <class F>
task<> read_until_lines(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    co_await c.write_all("first\nsecond\n\nthird\nno newline at the end");
    co_await c.shutdown();
    const std::string l1 = co_await s.read_until('\n');
    const std::string l2 = co_await s.read_until('\n');
    const std::string l3 = co_await s.read_until("\n");
    const std::string l4 = co_await s.read_until('\n');
    const std::string rest = co_await s.read_until('\n');
    const std::string end1 = co_await s.read_until('\n');
    const std::string end2 = co_await s.read_until('\n');
    CHECK(l1 == "first\n");
    CHECK(l2 == "second\n");
    CHECK(l3 == "\n");
    CHECK(l4 == "third\n");
    CHECK(rest == "no newline at the end");
    CHECK(end1.empty());
    CHECK(end2.empty());
    char buf[4];
    const std::size_t n = co_await s.read(std::span(buf));
    CHECK(n == 0);
}

template <class F>
task<> multi_char_delimiter_split(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    coring_test::no_delay(c);
    // Each piece arrives on its own, so the delimiter is split across reads in every possible way.
    auto writer = coring::spawn(coring_test::send_pieces(
        c, {"oneE", "ND", "twoEN", "Dthree", "E", "N", "D", "fourEENENDfive\r", "\n", "six\r\n\r", "\nx"}, 3ms, true));
    std::vector<std::string> lines;
    for (int i = 0; i < 4; ++i) {
        std::string line = co_await s.read_until("END");
        lines.push_back(std::move(line));
    }
    for (int i = 0; i < 5; ++i) {
        std::string line = co_await s.read_until("\r\n");
        lines.push_back(std::move(line));
    }
    co_await writer;
    const std::vector<std::string> expected = {"oneEND", "twoEND", "threeEND", "fourEENEND", "five\r\n", "six\r\n",
                                               "\r\n",   "x",      ""};
    CHECK(lines == expected);
}

template <class F>
task<> limit_overrun_keeps_bytes(F fam) {
    {
        auto [c, s] = co_await coring_test::connect_pair(fam);
        CHECK(s.limit() == coring::stream::default_limit);
        s.set_limit(16);
        CHECK(s.limit() == 16);
        co_await c.write_all("0123456789abcdefghij\nshort\n");
        CHECK_THROWS_AS(co_await s.read_until('\n'), coring::limit_overrun_error);
        // A plain receive stops at the limit; a multishot one has taken in all that arrived (both lines).
        const std::size_t kept = s.multishot() ? 27 : 16;
        CHECK(s.buffered() == kept);
        // Still too long for the limit: the same error, nothing consumed.
        CHECK_THROWS_AS(co_await s.read_until('\n'), coring::limit_overrun_error);
        CHECK(s.buffered() == kept);
        // A larger limit lets the whole line through, then the next.
        s.set_limit(64);
        const std::string line = co_await s.read_until('\n');
        CHECK(line == "0123456789abcdefghij\n");
        const std::string next = co_await s.read_until('\n');
        CHECK(next == "short\n");
    }
    {
        // The kept bytes come out of read() first, in order.
        auto [c, s] = co_await coring_test::connect_pair(fam);
        s.set_limit(8);
        const std::string sent = "abcdefghijkl\n1234567\n";
        co_await c.write_all(sent);
        std::string what;
        try {
            (void)co_await s.read_until('\n');
        } catch (const coring::limit_overrun_error& e) {
            what = e.what();
        }
        CHECK(what.find("limit of 8 bytes") != std::string::npos);
        // A plain receive stopped at the limit; a multishot one took in everything that had arrived.
        const std::size_t kept = s.buffered();
        CHECK(kept == (s.multishot() ? sent.size() : 8));
        char buf[64];
        const std::size_t n = co_await s.read(std::span(buf));
        CHECK(std::string(buf, n) == sent.substr(0, kept)); // what was kept, nothing more
        std::string rest(sent.size() - n, '\0');
        if (!rest.empty()) co_await s.read_exact(std::span(rest));
        CHECK(rest == sent.substr(n));
        // A line of exactly the limit (delimiter included) fits.
        co_await c.write_all("7654321\n");
        const std::string fits = co_await s.read_until('\n');
        CHECK(fits == "7654321\n");
    }
    {
        // The default limit: 64 KiB.
        auto [c, s] = co_await coring_test::connect_pair(fam);
        const std::string huge(coring::stream::default_limit + 100, 'h');
        auto writer = coring::spawn(c.write_all(huge));
        CHECK_THROWS_AS(co_await s.read_until('\n'), coring::limit_overrun_error);
        // A multishot receive pauses once the limit is reached, with what the last completions brought beyond it.
        if (s.multishot()) CHECK((s.buffered() >= coring::stream::default_limit && s.buffered() <= huge.size()));
        else CHECK(s.buffered() == coring::stream::default_limit);
        co_await writer;
    }
}

template <class F>
task<> mixed_reads_share_the_buffer(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    // A header, a body of known length and what follows, all in one write: read_until reads ahead; read_exact and
    // read take the read-ahead bytes first.
    co_await c.write_all("LEN 10\r\n0123456789tail");
    co_await c.shutdown();
    const std::string header = co_await s.read_until("\r\n");
    CHECK(header == "LEN 10\r\n");
    CHECK(s.buffered() == 14);
    char body[10];
    co_await s.read_exact(std::span(body));
    CHECK(std::string(body, 10) == "0123456789");
    char buf[64];
    const std::size_t n = co_await s.read(std::span(buf));
    CHECK(std::string(buf, n) == "tail");
    const std::size_t end = co_await s.read(std::span(buf));
    CHECK(end == 0);
}

template <class F>
task<> many_lines_in_random_pieces(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    coring_test::no_delay(c);
    std::string all;
    std::vector<std::string> expected;
    for (int i = 0; i < 2000; ++i) {
        std::string line =
            "line " + std::to_string(i) + " " + std::string(static_cast<std::size_t>(i % 97), 'x') + "\r\n";
        all += line;
        expected.push_back(std::move(line));
    }
    auto writer = coring::spawn([](coring::stream& out, const std::string& text) -> task<> {
        std::uint64_t r = 12345;
        for (std::size_t at = 0; at < text.size();) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            const std::size_t n = std::min<std::size_t>(text.size() - at, 1 + (r >> 33) % 300);
            co_await out.write_all(std::string_view(text).substr(at, n));
            at += n;
            if ((r >> 20) % 8 == 0) co_await coring::yield_now();
        }
        co_await out.shutdown();
    }(c, all));
    std::vector<std::string> got;
    for (;;) {
        std::string line = co_await s.read_until("\r\n");
        if (line.empty()) break;
        got.push_back(std::move(line));
    }
    co_await writer;
    CHECK(got.size() == expected.size());
    CHECK(got == expected);
}

} // namespace

TEST_CASE("stream - read returns what arrived, read_exact fills its buffer, the end reads as 0", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(read_returns_what_arrived(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - read_exact cut short by the end is incomplete_read_error and keeps the bytes", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(read_exact_at_the_end(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - read_until returns lines, then the rest without delimiter, then empty", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(read_until_lines(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - read_until with a multi-character delimiter split across reads", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(multi_char_delimiter_split(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - a line longer than the limit is limit_overrun_error and its bytes stay", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(limit_overrun_keeps_bytes(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - read_until, read_exact and read share the read-ahead buffer in order", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(mixed_reads_share_the_buffer(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - two thousand lines written in random pieces are read back whole and in order", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(many_lines_in_random_pieces(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_stream_reads
