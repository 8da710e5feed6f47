// tls::stream between coring peers: data both ways, ALPN, TLS 1.2 and 1.3, the ends of a connection (close_notify,
// truncation, shutdown, close() bounded in time and during a pending read), key updates.

#include "support/tls_helpers.hpp"

#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <catch2/catch.hpp>

#include <cerrno>
#include <string>

namespace test_tls_stream {

using namespace std::chrono_literals;
using coring::task;
using coring_test::stopwatch;
using coring_test::tls_connect_pair;

namespace {

coring::tls::context client_ctx() { return coring_test::test_client_context(); }
coring::tls::context server_ctx() { return coring_test::test_server_context(); }

task<> exchange_lines(coring::tls::stream& a, coring::tls::stream& b) {
    co_await a.write_all("hello from a\n");
    const std::string at_b = co_await b.read_until("\n");
    CHECK(at_b == "hello from a\n");
    co_await b.write_all("and b answers\nsecond line");
    const std::string first = co_await a.read_until("\n");
    CHECK(first == "and b answers\n");
    char rest[11];
    co_await a.read_exact(std::span<char>(rest));
    CHECK(std::string_view(rest, 11) == "second line");
}

} // namespace

TEST_CASE("tls::stream - handshake and data both ways, TLS 1.3 by default", "[tls][stream]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        CHECK(p.client.version() == "TLSv1.3");
        CHECK(p.server.version() == "TLSv1.3");
        CHECK(p.client.alpn().empty());
        CHECK(p.client.peer().find("localhost:") == 0);
        CHECK(p.server.peer().find("127.0.0.1:") == 0);
        co_await exchange_lines(p.client, p.server);
        co_await exchange_lines(p.server, p.client);
        co_await p.client.close();
        co_await p.server.close();
    }());
}

TEST_CASE("tls::stream - TLS 1.2 when a side allows no more", "[tls][stream]") {
    coring::run([]() -> task<> {
        auto c = client_ctx();
        SSL_CTX_set_max_proto_version(c.native_handle(), TLS1_2_VERSION);
        auto p = co_await tls_connect_pair(c, server_ctx());
        CHECK(p.client.version() == "TLSv1.2");
        CHECK(p.server.version() == "TLSv1.2");
        co_await exchange_lines(p.client, p.server);
        co_await exchange_lines(p.server, p.client);
        co_await p.client.close();
        char ch;
        const std::size_t n = co_await p.server.read(std::span<char>(&ch, 1));
        CHECK(n == 0);
    }());
}

TEST_CASE("tls::stream - ALPN: the server picks its first choice the client offers, none in common is none",
          "[tls][stream]") {
    coring::run([]() -> task<> {
        auto s = server_ctx();
        s.set_alpn({"h2", "http/1.1"});
        auto c = client_ctx();
        c.set_alpn({"http/1.1", "h2"});
        auto p = co_await tls_connect_pair(c, s);
        CHECK(p.client.alpn() == "h2");
        CHECK(p.server.alpn() == "h2");
        auto c2 = client_ctx();
        c2.set_alpn({"spdy/1"});
        auto q = co_await tls_connect_pair(c2, s);
        CHECK(q.client.alpn().empty());
        CHECK(q.server.alpn().empty());
        co_await exchange_lines(q.client, q.server);
    }());
}

TEST_CASE("tls::stream - close() sends close_notify: the peer reads a clean end, twice", "[tls][stream]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        co_await p.server.write_all("last words\n");
        co_await p.server.close();
        CHECK_FALSE(p.server.is_open());
        co_await p.server.close(); // harmless
        const std::string line = co_await p.client.read_until("\n");
        CHECK(line == "last words\n");
        char buf[16];
        const std::size_t n = co_await p.client.read(std::span<char>(buf));
        CHECK(n == 0);
        CHECK(p.client.peer_closed());
        const std::size_t again = co_await p.client.read(std::span<char>(buf));
        CHECK(again == 0);
        const std::string rest = co_await p.client.read_until("\n");
        CHECK(rest.empty());
    }());
}

TEST_CASE("tls::stream - a peer that ends TCP without close_notify is tls::truncated", "[tls][stream]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        co_await p.server.write_all("cut he");
        co_await p.server.socket().close(); // the TCP stream ends; no close_notify
        std::string what;
        bool truncated = false;
        try {
            (void)co_await p.client.read_until("\n");
        } catch (const coring::tls::truncated& e) {
            truncated = true;
            what = e.what();
        }
        CHECK(truncated);
        CHECK(what.find("coring: tls read from localhost:") == 0);
        CHECK(what.find("without close_notify") != std::string::npos);
        // The bytes that did arrive are not lost: they are still buffered.
        CHECK(p.client.buffered() == 6);
    }());
}

TEST_CASE("tls::stream - shutdown() ends one direction, the other still carries data", "[tls][stream]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        co_await p.client.write_all("request\n");
        co_await p.client.shutdown();
        const std::string refused = co_await coring_test::logic_error_of(p.client.write_all("more"));
        CHECK_FALSE(refused.empty());
        const std::string req = co_await p.server.read_until("\n");
        CHECK(req == "request\n");
        char c;
        const std::size_t end = co_await p.server.read(std::span<char>(&c, 1));
        CHECK(end == 0);
        co_await p.server.write_all("response\n");
        co_await p.server.close();
        const std::string resp = co_await p.client.read_until("\n");
        CHECK(resp == "response\n");
        const std::size_t n = co_await p.client.read(std::span<char>(&c, 1));
        CHECK(n == 0);
    }());
}

namespace {

/// Writes `total` bytes in 16 KiB pieces, counting in `sent` those the stream took; what it failed with.
task<std::string> write_until_failure(coring::tls::stream& s, std::size_t total, std::size_t& sent) {
    const std::string chunk(16 * 1024, 'x');
    try {
        for (sent = 0; sent < total; sent += chunk.size()) co_await s.write_all(chunk);
    } catch (const std::exception& e) {
        co_return e.what();
    }
    co_return "(no error)";
}

task<std::string> read_failure(coring::tls::stream& s) {
    char buf[256];
    try {
        const std::size_t n = co_await s.read(std::span<char>(buf));
        co_return "(read " + std::to_string(n) + " bytes)";
    } catch (const std::system_error& e) {
        co_return std::string(e.code() == std::errc::operation_canceled ? "ECANCELED: " : "other: ") + e.what();
    }
}

} // namespace

TEST_CASE("tls::stream - close() is bounded in time against a peer that does not read", "[tls][stream][close]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        static_cast<coring::tcp_stream&>(p.client.socket()).set_send_buffer_size(4096);
        std::size_t sent = 0;
        auto writer = coring::spawn(write_until_failure(p.client, 256u << 20, sent));
        // Until the writer is blocked (the server reads nothing): no progress for 200 ms. A fixed 100 ms was not
        // always enough under ThreadSanitizer on a loaded machine (close() then returned in 2 ms).
        std::size_t seen = sent;
        for (int stable = 0; stable < 2;) {
            co_await coring::sleep(100ms);
            stable = sent == seen ? stable + 1 : 0;
            seen = sent;
        }
        stopwatch sw;
        co_await p.client.close();
        const double took = sw.seconds();
        CHECK(took < 3.0);
        CHECK(took >= 0.5); // it did wait for the socket to take close_notify
        const std::string why = co_await std::move(writer);
        INFO(why);
        CHECK(why != "(no error)");
        co_await p.server.close();
    }());
}

TEST_CASE("tls::stream - close() during a pending read: the read ends with ECANCELED, the peer reads a clean end",
          "[tls][stream][close]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        auto reader = coring::spawn(read_failure(p.client));
        co_await coring::sleep(50ms);
        co_await p.client.close();
        const std::string r = co_await std::move(reader);
        INFO(r);
        CHECK(r.find("ECANCELED") == 0);
        char c;
        const std::size_t n = co_await p.server.read(std::span<char>(&c, 1));
        CHECK(n == 0);
        CHECK(p.server.peer_closed());
    }());
}

TEST_CASE("tls::stream - key updates requested by either side keep data flowing both ways",
          "[tls][stream][keyupdate]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        for (int i = 0; i < 20; ++i) {
            coring::tls::stream& a = i % 2 ? p.client : p.server;
            coring::tls::stream& b = i % 2 ? p.server : p.client;
            REQUIRE(SSL_key_update(a.native_handle(), SSL_KEY_UPDATE_REQUESTED) == 1);
            const std::string msg = "message " + std::to_string(i) + "\n";
            co_await a.write_all(msg);
            const std::string got = co_await b.read_until("\n");
            CHECK(got == msg);
            // b's answering KeyUpdate goes out before b's next records.
            co_await b.write_all("ack\n");
            const std::string ack = co_await a.read_until("\n");
            CHECK(ack == "ack\n");
        }
        co_await p.client.close();
        char c;
        const std::size_t n = co_await p.server.read(std::span<char>(&c, 1));
        CHECK(n == 0);
    }());
}

TEST_CASE("tls::stream - has_pending_input sees decrypted and undecrypted input", "[tls][stream]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        // A TLS 1.3 server sends session tickets after the handshake: records too, pending until a read takes them
        // (with a multishot receive they are already in the stream's buffer). One exchange takes them.
        co_await p.server.write_all("x\n");
        const std::string x = co_await p.client.read_until("\n");
        CHECK(x == "x\n");
        CHECK_FALSE(p.client.has_pending_input());
        co_await p.server.write_all("one\ntwo\n");
        const std::string one = co_await p.client.read_until("\n");
        CHECK(one == "one\n");
        CHECK(p.client.has_pending_input());
        const std::string two = co_await p.client.read_until("\n");
        CHECK(two == "two\n");
        CHECK_FALSE(p.client.has_pending_input());
    }());
}

TEST_CASE("tls::stream - a peer that does not speak TLS fails the handshake with OpenSSL's reason", "[tls][stream]") {
    coring::run([]() -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        auto accepted = coring::spawn(l.accept());
        auto tcp = co_await coring::tcp_stream::connect(l.local_address());
        auto raw = co_await std::move(accepted);
        co_await raw.write_all(std::string_view("this is not TLS at all\r\n\r\n"));
        std::string first;
        try {
            (void)co_await coring::tls::stream::connect(client_ctx(), std::move(tcp), "localhost");
        } catch (const coring::tls::error& e) {
            first = e.what();
        }
        INFO(first);
        CHECK(first.find("coring: tls handshake with localhost:") == 0);
        CHECK(first.find("wrong version number") != std::string::npos);
    }());
}

} // namespace test_tls_stream
