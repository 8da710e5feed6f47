// Streams reading through a multishot receive (stream::enable_multishot): the receive stays armed between reads,
// bytes that arrive while nobody reads are kept, a full read-ahead buffer pauses it, a dry buffer ring costs a
// re-arm and never a byte, and closing, destroying, moving or outliving the loop leaves nothing behind.
// (The whole stream test suite also runs with every stream multishot: the "multishot:" tests in CTest.)
// The epoll backend has no multishot receive (enable_multishot() leaves multishot() false): the tests that check the
// receive itself are [io_uring-only]; those that only need reads to behave the same either way run on both (on
// epoll the 32-connection echo is plain reads and writes, every byte still checked).

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <cerrno>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace test_stream_multishot {

using namespace std::chrono_literals;
using coring::task;
using coring_test::for_each_family;

namespace {

template <class F>
task<> reads_and_bytes_kept_between_reads(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    s.enable_multishot();
    REQUIRE(s.multishot());
    char buf[64];

    co_await c.write_all("first");
    const std::size_t n1 = co_await s.read(std::span(buf));
    CHECK(std::string(buf, n1) == "first");

    // Nobody reads now; the armed receive keeps what arrives in the stream.
    co_await c.write_all("one\ntwo\n");
    co_await c.write_all("0123456789");
    for (int i = 0; i < 200 && s.buffered() < 18; ++i) co_await coring::sleep(1ms);
    CHECK(s.buffered() == 18);
    const std::string l1 = co_await s.read_until('\n');
    const std::string l2 = co_await s.read_until('\n');
    CHECK(l1 == "one\n");
    CHECK(l2 == "two\n");
    char ten[10];
    co_await s.read_exact(std::span(ten));
    CHECK(std::string(ten, 10) == "0123456789");
    CHECK(s.buffered() == 0);

    // A read that waits gets the next bytes directly; read_exact across pieces.
    auto writer = coring::spawn(coring_test::send_pieces(c, {"ab", "cde", "fgh"}, 2ms, true));
    char eight[8];
    co_await s.read_exact(std::span(eight));
    CHECK(std::string(eight, 8) == "abcdefgh");
    co_await writer;
    const std::size_t end = co_await s.read(std::span(buf));
    CHECK(end == 0);
    const std::size_t again = co_await s.read(std::span(buf));
    CHECK(again == 0);
    const std::string rest = co_await s.read_until('\n');
    CHECK(rest.empty());
}

/// The peer sends `total` bytes in one go while the reader sleeps; the read-ahead buffer must stay bounded and every
/// byte arrive in order.
template <class S>
task<> backpressure(S& c, S& s, std::size_t total) {
    s.set_limit(64 * 1024);
    s.enable_multishot();
    REQUIRE(s.multishot());
    char first[1];
    auto writer = coring::spawn([](S& c, std::size_t total) -> task<> {
        coring_test::pattern p(7);
        const std::string data = p.text(total);
        co_await c.write_all(data);
        co_await c.shutdown();
    }(c, total));
    const std::size_t n1 = co_await s.read(std::span(first)); // arms the receive
    REQUIRE(n1 == 1);
    co_await coring::sleep(100ms); // the writer fills everything it can meanwhile
    // Bounded: the limit, plus what completions already queued when the receive was paused could carry.
    CHECK(s.buffered() <= 64 * 1024 + 256 * 4096);
    coring_test::pattern expect(7);
    std::string want = expect.text(total);
    std::string got(first, 1);
    std::vector<char> buf(8192);
    for (;;) {
        const std::size_t n = co_await s.read(std::span(buf));
        if (n == 0) break;
        got.append(buf.data(), n);
    }
    co_await writer;
    CHECK(got.size() == total);
    CHECK(got == want);
}

template <class F>
task<> backpressure_case(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    co_await backpressure(c, s, 4 * 1024 * 1024);
}

/// A waiting read cancelled by a timeout; the receive stays armed and the bytes that come later are read.
template <class F>
task<> cancel_and_timeout(F fam) {
    auto [c, s] = co_await coring_test::connect_pair(fam);
    s.enable_multishot();
    char buf[32];
    for (int i = 0; i < 3; ++i) {
        bool timed_out = false;
        try {
            (void)co_await coring::timeout(5ms, s.read(std::span(buf)));
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        CHECK(timed_out);
    }
    co_await c.write_all("late");
    const std::size_t n = co_await coring::timeout(5s, s.read(std::span(buf)));
    CHECK(std::string(buf, n) == "late");

    // read_exact cancelled half-way keeps its partial bytes in front of the later ones.
    co_await c.write_all("ab");
    bool timed_out = false;
    try {
        co_await coring::timeout(20ms, s.read_exact(std::span(buf).first(4)));
    } catch (const coring::timeout_error&) {
        timed_out = true;
    }
    CHECK(timed_out);
    co_await c.write_all("cd");
    char four[4];
    co_await coring::timeout(5s, s.read_exact(std::span(four)));
    CHECK(std::string(four, 4) == "abcd");
}

task<> close_under_a_waiting_read() {
    const int fds = coring_test::open_fds();
    {
        auto [c, s] = co_await coring_test::connect_pair(coring_test::tcp_v4{});
        s.enable_multishot();
        auto reader = coring::spawn([](coring::tcp_stream& s) -> task<coring_test::io_failure> {
            char buf[16];
            auto f = co_await coring_test::failure_of(s.read(std::span(buf)));
            co_return f;
        }(s));
        co_await coring::sleep(5ms);
        co_await s.close();
        const coring_test::io_failure f = co_await reader;
        CHECK(f.code == ECANCELED);
        CHECK_FALSE(s.multishot());
        co_await coring::sleep(5ms);
        CHECK(coring::event_loop::current().in_flight() == 0);
    }
    // Destroyed with the receive armed (read once, then dropped): cancelled, freed, descriptor closed.
    {
        auto [c, s] = co_await coring_test::connect_pair(coring_test::tcp_v4{});
        s.enable_multishot();
        co_await c.write_all("x");
        char one[1];
        (void)co_await s.read(std::span(one));
        CHECK(coring::event_loop::current().in_flight() >= 1);
    }
    co_await coring::sleep(5ms);
    CHECK(coring::event_loop::current().in_flight() == 0);
    CHECK(coring_test::open_fds() == fds);
}

task<> move_between_reads() {
    auto [c, s] = co_await coring_test::connect_pair(coring_test::tcp_v4{});
    s.enable_multishot();
    co_await c.write_all("1");
    char one[1];
    (void)co_await s.read(std::span(one));
    co_await c.write_all("23");
    coring::tcp_stream moved = std::move(s);
    CHECK(moved.multishot());
    char two[2];
    co_await moved.read_exact(std::span(two));
    CHECK(std::string(two, 2) == "23");
    co_await c.close();
    const std::size_t end = co_await moved.read(std::span(two));
    CHECK(end == 0);
}

task<> reset_by_peer() {
    auto [c, s] = co_await coring_test::connect_pair(coring_test::tcp_v4{});
    s.enable_multishot();
    auto reader = coring::spawn([](coring::tcp_stream& s) -> task<coring_test::io_failure> {
        char buf[16];
        auto f = co_await coring_test::failure_of(s.read(std::span(buf)));
        co_return f;
    }(s));
    co_await coring::sleep(5ms);
    const ::linger lg{1, 0}; // close with a reset
    REQUIRE(::setsockopt(c.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    co_await c.close();
    const coring_test::io_failure f = co_await reader;
    CHECK(f.code == ECONNRESET);
    CHECK(f.what.find("recv from") != std::string::npos);
}

/// Many connections echoing through a ring of two buffers: receives keep finding it empty (ENOBUFS) and are
/// re-armed; every byte still arrives.
task<> tiny_ring_echo() {
    coring::tcp_listener l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    auto server = coring::spawn([](coring::tcp_listener& l) -> task<> {
        coring::task_group g;
        for (int i = 0; i < 32; ++i) {
            coring::tcp_stream s = co_await l.accept();
            (void)g.spawn([](coring::tcp_stream s) -> task<> {
                s.enable_multishot();
                std::vector<char> buf(3000);
                for (;;) {
                    const std::size_t n = co_await s.read(std::span(buf));
                    if (n == 0) break;
                    co_await s.write_all(std::string_view(buf.data(), n));
                }
                co_await s.close();
            }(std::move(s)));
        }
        co_await g.join();
    }(l));
    std::vector<coring::task<std::string>> clients;
    for (int i = 0; i < 32; ++i)
        clients.push_back([](coring::address at, int seed) -> task<std::string> {
            coring::tcp_stream c = co_await coring::tcp_stream::connect(at);
            coring_test::pattern p(static_cast<std::uint64_t>(seed));
            const std::string data = p.text(256 * 1024);
            auto writer = coring::spawn([](coring::tcp_stream& c, const std::string& d) -> task<> {
                co_await c.write_all(d);
                co_await c.shutdown();
            }(c, data));
            std::string got;
            std::vector<char> buf(16384);
            for (;;) {
                const std::size_t n = co_await c.read(std::span(buf));
                if (n == 0) break;
                got.append(buf.data(), n);
            }
            co_await writer;
            co_return got == data ? "ok" : "mismatch after " + std::to_string(got.size()) + " bytes";
        }(l.local_address(), i));
    std::vector<std::string> results = co_await coring::gather(std::move(clients));
    co_await server;
    for (const std::string& r : results) CHECK(r == "ok");
}

} // namespace

TEST_CASE("stream multishot - reads of every kind, bytes kept between reads, the end",
          "[net][multishot][io_uring-only]") {
    for_each_family([](auto fam) { coring::run(reads_and_bytes_kept_between_reads(fam)); });
}

TEST_CASE("stream multishot - a peer sending 4 MiB to a reader that sleeps: bounded buffer, every byte in order",
          "[net][multishot][io_uring-only]") {
    for_each_family([](auto fam) { coring::run(backpressure_case(fam)); });
}

TEST_CASE("stream multishot - timeouts and cancels keep the receive armed and lose no byte", "[net][multishot]") {
    for_each_family([](auto fam) { coring::run(cancel_and_timeout(fam)); });
}

TEST_CASE("stream multishot - close under a waiting read is ECANCELED, close and destruction leave nothing in flight",
          "[net][multishot][io_uring-only]") {
    coring::run(close_under_a_waiting_read());
}

TEST_CASE("stream multishot - a stream moved between reads keeps its receive", "[net][multishot][io_uring-only]") {
    coring::run(move_between_reads());
}

TEST_CASE("stream multishot - a peer reset ends a waiting read with ECONNRESET", "[net][multishot]") {
    coring::run(reset_by_peer());
}

TEST_CASE("stream multishot - 32 connections echo 256 KiB each through a ring of two buffers", "[net][multishot]") {
    coring::loop_options o;
    o.receive_buffers = 2;
    o.receive_buffer_size = 1024;
    coring::event_loop loop(o);
    loop.run(tiny_ring_echo());
}

TEST_CASE("stream multishot - off by loop option: enable_multishot changes nothing", "[net][multishot]") {
    coring::loop_options o;
    o.multishot_receive = false;
    coring::event_loop loop(o);
    loop.run([]() -> task<> {
        auto [c, s] = co_await coring_test::connect_pair(coring_test::tcp_v4{});
        s.enable_multishot();
        CHECK_FALSE(s.multishot());
        co_await c.write_all("plain");
        char buf[8];
        const std::size_t n = co_await s.read(std::span(buf));
        CHECK(std::string(buf, n) == "plain");
    }());
}

TEST_CASE("stream multishot - a stream that outlives run() and its loop", "[net][multishot][io_uring-only]") {
    std::optional<coring::tcp_stream> client, server;
    {
        coring::event_loop loop;
        loop.run([](std::optional<coring::tcp_stream>& client, std::optional<coring::tcp_stream>& server) -> task<> {
            auto [c, s] = co_await coring_test::connect_pair(coring_test::tcp_v4{});
            s.enable_multishot();
            co_await c.write_all("a");
            char one[1];
            (void)co_await s.read(std::span(one));
            client.emplace(std::move(c));
            server.emplace(std::move(s));
        }(client, server));
        CHECK(loop.in_flight() == 0); // the drain stopped the armed receive
        // A second run re-arms it on demand.
        loop.run([](coring::tcp_stream& c, coring::tcp_stream& s) -> task<> {
            co_await c.write_all("bc");
            char two[2];
            co_await s.read_exact(std::span(two));
            CHECK(std::string(two, 2) == "bc");
        }(*client, *server));
    }
    // The loop is gone; the streams are destroyed later without touching it.
    CHECK(server->multishot());
    server.reset();
    client.reset();
}

} // namespace test_stream_multishot
