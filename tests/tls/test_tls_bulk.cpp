// Volume: 64 MiB each way on one TLS connection with a checksum, key updates in the middle of traffic both ways,
// and many concurrent TLS connections in one loop.

#include "support/tls_helpers.hpp"

#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

namespace test_tls_bulk {

using namespace std::chrono_literals;
using coring::task;
using coring_test::checksum;
using coring_test::pattern;
using coring_test::tls_connect_pair;

namespace {

struct sums {
    std::uint64_t value = 0;
    std::uint64_t bytes = 0;
};

/// Writes `total` bytes of pattern(seed) in pieces of varying size; every `key_update_every` pieces (0: never) asks
/// the peer to update its keys too.
task<sums> send_pattern(coring::tls::stream& s, std::uint64_t seed, std::size_t total, int key_update_every) {
    pattern gen(seed);
    checksum sum;
    std::string chunk(256 * 1024, '\0');
    std::size_t sent = 0;
    for (int i = 0; sent < total; ++i) {
        const std::size_t n = std::min<std::size_t>(total - sent, 8 * (1 + (i * 7919) % (chunk.size() / 8)));
        gen.fill(std::as_writable_bytes(std::span(chunk.data(), n)));
        if (key_update_every && i % key_update_every == key_update_every - 1)
            REQUIRE(SSL_key_update(s.native_handle(), SSL_KEY_UPDATE_REQUESTED) == 1);
        co_await s.write_all(std::string_view(chunk.data(), n));
        sum.update(std::string_view(chunk.data(), n));
        sent += n;
    }
    co_return sums{sum.value(), sum.bytes()};
}

task<sums> receive_all(coring::tls::stream& s, std::size_t total) {
    checksum sum;
    std::string buf(64 * 1024, '\0');
    while (sum.bytes() < total) {
        const std::size_t n = co_await s.read(std::span<char>(buf.data(), std::min(buf.size(), total - sum.bytes())));
        if (n == 0) break;
        sum.update(std::string_view(buf.data(), n));
    }
    co_return sums{sum.value(), sum.bytes()};
}

task<sums> expected(std::uint64_t seed, std::size_t total) {
    pattern gen(seed);
    checksum sum;
    std::string chunk(256 * 1024, '\0');
    for (std::size_t done = 0; done < total;) {
        const std::size_t n = std::min(chunk.size(), total - done);
        gen.fill(std::as_writable_bytes(std::span(chunk.data(), n)));
        sum.update(std::string_view(chunk.data(), n));
        done += n;
    }
    co_return sums{sum.value(), sum.bytes()};
}

/// Both sides write `total` bytes and read the other's at the same time.
task<> both_ways(std::size_t total, int key_update_every, bool small_buffers) {
    auto p = co_await tls_connect_pair(coring_test::test_client_context(), coring_test::test_server_context());
    if (small_buffers)
        for (coring::tls::stream* s : {&p.client, &p.server}) {
            auto& tcp = static_cast<coring::tcp_stream&>(s->socket());
            // Small enough that both writers block long before 8 MiB; a 32 KiB receive buffer because loopback TCP
            // with 16 KiB crawls at about 150 KiB/s under QEMU's emulator, blocking sockets alike (see small_buffers
            // in net_helpers.hpp).
            tcp.set_send_buffer_size(16384);
            tcp.set_receive_buffer_size(32768);
        }
    // gather, not spawn: when bounded() times out, the four are cancelled and finished before the streams they use
    // are destroyed.
    const auto [cs, ss, cr, sr] = co_await coring::gather(send_pattern(p.client, 1, total, key_update_every),
                                                          send_pattern(p.server, 2, total, key_update_every),
                                                          receive_all(p.client, total), receive_all(p.server, total));
    const sums e1 = co_await expected(1, total);
    const sums e2 = co_await expected(2, total);
    CHECK(cs.bytes == total);
    CHECK(ss.bytes == total);
    CHECK(sr.bytes == total);
    CHECK(cr.bytes == total);
    CHECK(sr.value == e1.value);
    CHECK(cr.value == e2.value);
    CHECK(cs.value == e1.value);
    co_await p.client.close();
    char c;
    const std::size_t end = co_await p.server.read(std::span<char>(&c, 1));
    CHECK(end == 0);
    co_await p.server.close();
}

task<> bounded(std::chrono::seconds limit, task<> t) { co_await coring::timeout(limit, std::move(t)); }

} // namespace

TEST_CASE("tls bulk - 64 MiB each way at once on one connection, checksummed", "[tls][bulk]") {
    coring::run(bounded(120s, both_ways(64u << 20, 0, false)));
}

TEST_CASE("tls bulk - key updates requested both ways while both sides write before they read",
          "[tls][bulk][keyupdate]") {
    // Each side's reads answer the other's KeyUpdate while its own writer may be blocked on a peer that is itself
    // blocked writing: a read that waited for the write lock (or sent the writer's bulk) could deadlock both peers.
    coring::run(bounded(60s, both_ways(8u << 20, 3, true)));
}

namespace {

task<> serve_echo(coring::tls::stream s, int& served) {
    std::string line = co_await s.read_until("\n");
    co_await s.write_all(line);
    co_await s.close();
    ++served;
}

task<> accept_n(coring::tcp_listener& l, coring::tls::context ctx, int n, int& served, int& failed) {
    coring::task_group conns;
    for (int i = 0; i < n; ++i) {
        auto tcp = co_await l.accept();
        conns.spawn([](coring::tcp_stream tcp, coring::tls::context ctx, int& served, int& failed) -> task<> {
            try {
                auto s = co_await coring::tls::stream::accept(std::move(ctx), std::move(tcp));
                co_await serve_echo(std::move(s), served);
            } catch (const std::exception&) {
                ++failed;
            }
        }(std::move(tcp), ctx, served, failed));
    }
    co_await conns.join();
}

task<> one_client(coring::address at, coring::tls::context ctx, int i, int& ok) {
    auto tcp = co_await coring::tcp_stream::connect(at);
    auto s = co_await coring::tls::stream::connect(std::move(ctx), std::move(tcp), "localhost");
    const std::string msg = "client " + std::to_string(i) + "\n";
    co_await s.write_all(msg);
    const std::string echo = co_await s.read_until("\n");
    char c;
    const std::size_t end = co_await s.read(std::span<char>(&c, 1));
    if (echo == msg && end == 0) ++ok;
    co_await s.close();
}

task<> many(int n) {
    coring::listen_options lo;
    lo.backlog = 4096;
    auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"), lo);
    int served = 0, failed = 0, ok = 0;
    auto server = coring::spawn(accept_n(l, coring_test::test_server_context(), n, served, failed));
    {
        coring::task_group clients;
        auto cctx = coring_test::test_client_context();
        cctx.set_session_cache(false); // full handshakes, every one: none resumes a ticket an earlier one received
        for (int i = 0; i < n; ++i) clients.spawn(one_client(l.local_address(), cctx, i, ok));
        co_await clients.join();
    }
    co_await std::move(server);
    CHECK(ok == n);
    CHECK(served == n);
    CHECK(failed == 0);
}

} // namespace

TEST_CASE("tls bulk - many concurrent TLS connections in one loop (CORING_TLS_CONNECTIONS, 1000, 200 sanitized)",
          "[tls][bulk][many]") {
    coring_test::raised_fd_limit fds;
    const int n = coring_test::tls_connection_count(1000, 200);
    coring_test::stopwatch sw;
    coring::run(bounded(180s, many(n)));
    WARN(n << " TLS connections (full handshakes, P-256) in " << sw.seconds() << " s");
}

} // namespace test_tls_bulk
