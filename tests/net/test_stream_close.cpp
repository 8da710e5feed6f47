// Ending a stream: half-close (shutdown), close while another task reads or writes, the destructor, moves.

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <csignal>
#include <stdexcept>
#include <string>
#include <system_error>

namespace test_stream_close {

using namespace std::chrono_literals;
using coring::task;
using coring_test::for_each_family;

namespace {

template <class F>
task<> half_close(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    co_await c.write_all("request line 1\nrequest line 2\n");
    co_await c.shutdown();

    // The server reads the request and then the end of the stream...
    const std::string r1 = co_await s.read_until('\n');
    const std::string r2 = co_await s.read_until('\n');
    const std::string end = co_await s.read_until('\n');
    CHECK(r1 == "request line 1\n");
    CHECK(r2 == "request line 2\n");
    CHECK(end.empty());
    // ...and can still answer, at length, which the half-closed client reads in full.
    const std::string answer(300000, 'a');
    auto writer = coring::spawn([](coring::stream& out, const std::string& text) -> task<> {
        co_await out.write_all(text);
        co_await out.write_all("\ndone\n");
        co_await out.close();
    }(s, answer));
    std::string got;
    char buf[8192];
    for (;;) {
        const std::size_t n = co_await c.read(std::span(buf));
        if (n == 0) break;
        got.append(buf, n);
    }
    co_await writer;
    CHECK(got.size() == answer.size() + 6);
    CHECK(got == answer + "\ndone\n");

    // Writing after one's own shutdown is an error (EPIPE), not a signal.
    std::string what;
    int code = 0;
    try {
        (void)co_await c.write("late");
    } catch (const std::system_error& e) {
        code = e.code().value();
        what = e.what();
    }
    INFO(what);
    CHECK(code == EPIPE);
    CHECK(what.find("send to") != std::string::npos);
}

template <class F>
task<> close_while_reading(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    auto reader = coring::spawn([](coring::stream& in) -> task<int> {
        char buf[16];
        try {
            (void)co_await in.read(std::span(buf));
        } catch (const std::system_error& e) {
            co_return e.code().value();
        }
        co_return 0;
    }(s));
    auto line_reader = coring::spawn([](coring::stream& in) -> task<int> {
        try {
            (void)co_await in.read_until('\n');
        } catch (const std::system_error& e) {
            co_return e.code().value();
        }
        co_return 0;
    }(c));
    co_await coring::sleep(10ms);
    CHECK_FALSE(reader.done());
    CHECK_FALSE(line_reader.done());
    const coring_test::stopwatch clock;
    co_await s.close();
    co_await c.close();
    const int r1 = co_await reader;
    const int r2 = co_await line_reader;
    CHECK(r1 == ECANCELED);
    CHECK(r2 == ECANCELED);
    CHECK(clock.seconds() < 5.0);
    CHECK_FALSE(s.is_open());
}

template <class F>
task<> close_while_writing(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    coring_test::small_buffers(c);
    coring_test::small_buffers(s);
    const std::string big(8 << 20, 'w');
    auto writer = coring::spawn([](coring::stream& out, const std::string& text) -> task<int> {
        try {
            co_await out.write_all(text);
        } catch (const std::system_error& e) {
            co_return e.code().value();
        }
        co_return 0;
    }(c, big));
    co_await coring::sleep(10ms);
    CHECK_FALSE(writer.done()); // the peer does not read: the write waits for room
    co_await c.close();
    const int code = co_await writer;
    CHECK(code == ECANCELED);
    // The peer sees a prefix of the data, then the end.
    std::string got;
    char buf[65536];
    for (;;) {
        const std::size_t n = co_await s.read(std::span(buf));
        if (n == 0) break;
        got.append(buf, n);
    }
    CHECK(got.size() < big.size());
    CHECK(got == big.substr(0, got.size()));
}

template <class F>
task<> destructor_and_moves(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    {
        // A moved stream: the source is empty, the destination works.
        typename F::stream_type moved = std::move(c);
        CHECK_FALSE(c.is_open());
        CHECK(c.native_handle() == -1);
        CHECK(moved.is_open());
        co_await moved.write_all("from the moved stream");
        typename F::stream_type assigned;
        CHECK_FALSE(assigned.is_open());
        assigned = std::move(moved);
        CHECK_FALSE(moved.is_open());
        co_await assigned.write_all("; assigned");
        // Leaving the scope closes the descriptor without close().
    }
    std::string got;
    char buf[64];
    for (;;) {
        const std::size_t n = co_await s.read(std::span(buf));
        if (n == 0) break;
        got.append(buf, n);
    }
    CHECK(got == "from the moved stream; assigned");

    // Read-ahead bytes move with the stream.
    auto [c2, s2] = co_await coring_test::connect_pair(fam);
    co_await c2.write_all("line\nrest");
    co_await c2.shutdown();
    const std::string line = co_await s2.read_until('\n');
    CHECK(line == "line\n");
    typename F::stream_type other = std::move(s2);
    const std::string rest = co_await other.read_until('\n');
    CHECK(rest == "rest");
}

} // namespace

TEST_CASE("stream - half-close: the peer reads the end and can still send, which this side reads", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(half_close(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - close while another task reads ends that read with ECANCELED, no hang", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(close_while_reading(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - close while another task writes ends that write with ECANCELED", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(close_while_writing(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("stream - the destructor closes, moves carry the socket and the read-ahead bytes", "[net][stream]") {
    const int fds = coring_test::open_fds();
    for_each_family([](auto fam) { coring::run(destructor_and_moves(fam)); });
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_stream_close
