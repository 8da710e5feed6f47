// Timeouts and cancellation of stream reads and writes: no byte is lost or duplicated, the stream stays usable.

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <system_error>
#include <vector>

namespace test_stream_cancel {

using namespace std::chrono_literals;
using coring::task;
using coring_test::for_each_family;

namespace {

template <class F>
task<> read_timeout_then_late_bytes(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    char buf[64];
    for (int i = 0; i < 3; ++i)
        CHECK_THROWS_AS(co_await coring::timeout(10ms, s.read(std::span(buf))), coring::timeout_error);
    co_await c.write_all("late bytes");
    const std::size_t n = co_await coring::timeout(5s, s.read(std::span(buf)));
    CHECK(std::string(buf, n) == "late bytes");

    // The same for read_exact and read_until: timeouts first, then everything that came is there.
    CHECK_THROWS_AS(co_await coring::timeout(10ms, s.read_exact(std::span(buf).first(4))), coring::timeout_error);
    CHECK_THROWS_AS(co_await coring::timeout(10ms, s.read_until('\n')), coring::timeout_error);
    co_await c.write_all("abcd");
    char four[4];
    co_await coring::timeout(5s, s.read_exact(std::span(four)));
    CHECK(std::string(four, 4) == "abcd");
    co_await c.write_all("line\n");
    const std::string line = co_await coring::timeout(5s, s.read_until('\n'));
    CHECK(line == "line\n");
}

template <class F>
task<> slow_line_under_repeated_timeouts(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    coring_test::no_delay(c);
    // A line and a record, each sent in pieces 25 ms apart; the reader gives up every 7 ms and tries again.
    auto writer = coring::spawn(
        coring_test::send_pieces(c, {"hel", "lo, ", "wor", "ld\r", "\nREC", "ORD-", "0123", "4567"}, 25ms, false));
    int timeouts = 0;
    std::string line;
    for (;;) {
        try {
            line = co_await coring::timeout(7ms, s.read_until("\r\n"));
            break;
        } catch (const coring::timeout_error&) {
            ++timeouts;
        }
    }
    CHECK(line == "hello, world\r\n");
    CHECK(timeouts >= 4);

    char record[14];
    int record_timeouts = 0;
    for (;;) {
        try {
            co_await coring::timeout(7ms, s.read_exact(std::span(record)));
            break;
        } catch (const coring::timeout_error&) {
            ++record_timeouts;
        }
    }
    CHECK(std::string(record, sizeof record) == "RECORD-0123456");
    CHECK(record_timeouts >= 2);
    co_await writer;
    char last[1];
    co_await s.read_exact(std::span(last));
    CHECK(last[0] == '7');
}

template <class F>
task<> cancelled_reads_keep_bytes(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    coring_test::no_delay(c);
    // read_until cancelled after part of a line arrived: the part stays for the next read_until.
    auto line_reader = coring::spawn(s.read_until('\n'));
    co_await c.write_all("partial ");
    co_await coring::sleep(10ms);
    line_reader.cancel();
    CHECK_THROWS_AS(co_await line_reader, coring::cancelled_error);
    CHECK(s.buffered() == 8);
    co_await c.write_all("line\n");
    const std::string line = co_await s.read_until('\n');
    CHECK(line == "partial line\n");

    // read_exact cancelled half-way: the bytes go back to the stream.
    char buf[10];
    auto exact_reader = coring::spawn(s.read_exact(std::span(buf)));
    co_await c.write_all("01234");
    co_await coring::sleep(10ms);
    exact_reader.cancel();
    CHECK_THROWS_AS(co_await exact_reader, coring::cancelled_error);
    CHECK(s.buffered() == 5);
    co_await c.write_all("56789");
    co_await s.read_exact(std::span(buf));
    CHECK(std::string(buf, 10) == "0123456789");

    // A plain read cancelled before anything came: nothing consumed, the next read gets the bytes.
    auto plain_reader = coring::spawn(s.read(std::span(buf)));
    co_await coring::sleep(5ms);
    plain_reader.cancel();
    CHECK_THROWS_AS(co_await plain_reader, coring::cancelled_error);
    co_await c.write_all("after");
    const std::size_t n = co_await s.read(std::span(buf));
    CHECK(std::string(buf, n) == "after");
}

template <class F>
task<> cancelled_write_sends_a_prefix(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    coring_test::small_buffers(c);
    coring_test::small_buffers(s);
    coring_test::pattern p(3);
    const std::string big = p.text(4 << 20);
    // A write_all the peer does not read waits for room; a timeout stops it having sent a prefix of the buffer.
    CHECK_THROWS_AS(co_await coring::timeout(20ms, c.write_all(big)), coring::timeout_error);

    // Now the peer reads; a second write_all of the same buffer is cancelled while it is moving (or it finished).
    auto reader = coring::spawn([](coring::stream& in) -> task<std::string> {
        std::string got;
        std::vector<char> buf(65536);
        for (;;) {
            const std::size_t n = co_await in.read(std::span(buf));
            if (n == 0) break;
            got.append(buf.data(), n);
        }
        co_return got;
    }(s));
    auto writer = coring::spawn(c.write_all(big));
    co_await coring::sleep(2ms);
    writer.cancel();
    bool finished = false;
    try {
        co_await writer;
        finished = true;
    } catch (const coring::cancelled_error&) {}
    // The stream still writes after both.
    co_await c.write_all("END");
    co_await c.shutdown();
    std::string got = co_await reader;
    REQUIRE(got.size() >= 3);
    CHECK(got.substr(got.size() - 3) == "END");
    got.resize(got.size() - 3);

    // got must be big[0, a) followed by big[0, b): find the split (random data: a wrong split fails at once).
    std::size_t common = 0;
    while (common < got.size() && common < big.size() && got[common] == big[common]) ++common;
    std::size_t split = std::string::npos;
    for (std::size_t a = 1; a <= common; ++a) {
        const std::size_t b = got.size() - a;
        if (b <= big.size() && got.compare(a, b, big, 0, b) == 0) {
            split = a;
            break;
        }
    }
    INFO("received " << got.size() << " bytes; the second write_all " << (finished ? "finished" : "was cancelled"));
    REQUIRE(split != std::string::npos);
    CHECK(split < big.size()); // the timed-out write_all did not send everything
    if (finished) CHECK(got.size() - split == big.size());
    else CHECK(got.size() - split < big.size());
}

/// Lines written in random pieces at random moments, read with random microsecond deadlines: completion and deadline
/// race all the time; every line must come out once, whole and in order.
template <class F>
task<> racing_deadlines(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    coring_test::no_delay(c);
    std::string all;
    std::vector<std::string> expected;
    for (int i = 0; i < 400; ++i) {
        std::string line = std::to_string(i) + ":" + std::string(static_cast<std::size_t>(i % 37), '.') + "\n";
        all += line;
        expected.push_back(std::move(line));
    }
    auto writer = coring::spawn([](coring::stream& out, const std::string& text) -> task<> {
        std::mt19937 rng(7);
        for (std::size_t at = 0; at < text.size();) {
            const std::size_t n = std::min<std::size_t>(text.size() - at, 1 + rng() % 40);
            co_await out.write_all(std::string_view(text).substr(at, n));
            at += n;
            if (rng() % 3 == 0) co_await coring::sleep(std::chrono::microseconds(rng() % 300));
        }
        co_await out.shutdown();
    }(c, all));
    std::mt19937 rng(11);
    std::vector<std::string> got;
    int timeouts = 0;
    for (;;) {
        std::string line;
        bool timed_out = false;
        try {
            const auto deadline = std::chrono::microseconds(rng() % 200);
            if (rng() % 4 == 0) {
                // read_exact of the line's known length, when the next line is known.
                if (got.size() < expected.size()) {
                    std::string exact(expected[got.size()].size(), '\0');
                    co_await coring::timeout(deadline, s.read_exact(std::span(exact)));
                    line = std::move(exact);
                }
            } else {
                line = co_await coring::timeout(deadline, s.read_until('\n'));
            }
        } catch (const coring::timeout_error&) {
            timed_out = true;
            ++timeouts;
        }
        if (timed_out) continue;
        if (line.empty()) break;
        got.push_back(std::move(line));
    }
    co_await writer;
    INFO(timeouts << " timeouts");
    CHECK(got.size() == expected.size());
    CHECK(got == expected);
}

} // namespace

TEST_CASE("stream - a read that times out on a silent peer, the bytes that come later are read normally",
          "[net][stream][timeout]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(read_timeout_then_late_bytes(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - read_until and read_exact under repeated timeouts keep every byte of a slow line",
          "[net][stream][timeout]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(slow_line_under_repeated_timeouts(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - cancelled read, read_until and read_exact leave their bytes for the next read",
          "[net][stream][cancel]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(cancelled_reads_keep_bytes(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - a write_all stopped by a timeout or a cancel has sent a prefix, the stream still writes",
          "[net][stream][cancel]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(cancelled_write_sends_a_prefix(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - reads racing random deadlines lose and duplicate nothing, on every ring setup",
          "[net][stream][timeout]") {
    const int fds = coring_test::open_fds();
    for (const auto& setup : coring_test::setups()) {
        SECTION(setup.name) {
            for_each_family([&setup](auto fam) {
                coring::event_loop loop(setup.options);
                loop.run(racing_deadlines(fam));
            });
        }
    }
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_stream_cancel
