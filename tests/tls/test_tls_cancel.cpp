// Cancellation and timeouts of tls::stream at every stage: the handshake (nothing left in flight, descriptors back
// to their count), reads (no decrypted byte lost; read_until keeps its partial line), writes (the stream stops
// writing rather than send a record twice).

#include "support/tls_helpers.hpp"

#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <catch2/catch.hpp>

#include <string>

namespace test_tls_cancel {

using namespace std::chrono_literals;
using coring::task;
using coring_test::open_fds;
using coring_test::tls_connect_pair;

namespace {

coring::tls::context client_ctx() { return coring_test::test_client_context(); }
coring::tls::context server_ctx() { return coring_test::test_server_context(); }

/// The client context of the handshake loops below, made once: a client context loads the system trust store (70 ms,
/// about half a second under ThreadSanitizer), and these cases make dozens of handshakes. Without session resumption,
/// so that every handshake is a full one, as with a fresh context each time.
coring::tls::context shared_client_ctx() {
    static const coring::tls::context ctx = [] {
        coring::tls::context c = coring_test::test_client_context();
        c.set_session_cache(false);
        return c;
    }();
    return ctx;
}

/// Connects with a timeout to a server that accepts TCP and never answers; true when it timed out.
task<bool> connect_to_silent_server(coring::tcp_listener& l, std::chrono::milliseconds limit) {
    auto accepted = coring::spawn(l.accept());
    bool timed_out = false;
    try {
        (void)co_await coring::timeout(
            limit, coring::tls::stream::connect(shared_client_ctx(), "127.0.0.1", l.local_address().port()));
    } catch (const coring::timeout_error&) {
        timed_out = true;
    }
    auto silent = co_await std::move(accepted); // held open (and silent) until now
    co_await silent.close();
    co_return timed_out;
}

task<bool> accept_silent_client(coring::tcp_listener& l, std::chrono::milliseconds limit) {
    auto client = co_await coring::tcp_stream::connect(l.local_address()); // sends no ClientHello
    auto tcp = co_await l.accept();
    bool timed_out = false;
    try {
        (void)co_await coring::timeout(limit, coring::tls::stream::accept(server_ctx(), std::move(tcp)));
    } catch (const coring::timeout_error&) {
        timed_out = true;
    }
    co_await client.close();
    co_return timed_out;
}

} // namespace

TEST_CASE("tls cancel - a handshake timeout against a silent server leaves nothing in flight and no descriptor",
          "[tls][cancel]") {
    coring::run([]() -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        (void)co_await connect_to_silent_server(l, 50ms); // warms up lazily made descriptors (worker pool, ...)
        const int base = open_fds();
        for (int i = 0; i < 10; ++i) {
            const bool timed_out = co_await connect_to_silent_server(l, 50ms);
            CHECK(timed_out);
        }
        CHECK(open_fds() == base);
    }());
}

TEST_CASE("tls cancel - a server handshake timeout against a silent client leaves no descriptor", "[tls][cancel]") {
    coring::run([]() -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        (void)co_await accept_silent_client(l, 50ms);
        const int base = open_fds();
        for (int i = 0; i < 10; ++i) {
            const bool timed_out = co_await accept_silent_client(l, 50ms);
            CHECK(timed_out);
        }
        CHECK(open_fds() == base);
    }());
}

namespace {

/// One handshake where the client gives up after `client_limit` and the server after `server_limit`: whatever stage
/// that is, both ends finish (connected, timed out, or a tls::error/system_error when the other gave up first).
task<int> handshake_with_deadlines(coring::tcp_listener& l, std::chrono::microseconds client_limit,
                                   std::chrono::microseconds server_limit) {
    int connected = 0;
    auto server = coring::spawn([](coring::tcp_listener& l, std::chrono::microseconds limit) -> task<int> {
        auto tcp = co_await l.accept();
        try {
            auto s = co_await coring::timeout(limit, coring::tls::stream::accept(server_ctx(), std::move(tcp)));
            co_await s.close();
            co_return 1;
        } catch (const coring::timeout_error&) {
        } catch (const std::exception&) {}
        co_return 0;
    }(l, server_limit));
    auto tcp = co_await coring::tcp_stream::connect(l.local_address());
    try {
        auto s = co_await coring::timeout(
            client_limit, coring::tls::stream::connect(shared_client_ctx(), std::move(tcp), "localhost"));
        co_await s.close();
        ++connected;
    } catch (const coring::timeout_error&) {
    } catch (const std::exception&) {}
    connected += co_await std::move(server);
    co_return connected;
}

} // namespace

TEST_CASE("tls cancel - timeouts at every stage of the handshake on either side end cleanly", "[tls][cancel]") {
    coring::run([]() -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        (void)co_await handshake_with_deadlines(l, 1s, 1s);
        const int base = open_fds();
        int full = 0;
        // From before the first byte to after the last, in steps: each deadline falls at some other stage.
        for (int us = 0; us <= 6000; us += 150) {
            const int c1 = co_await handshake_with_deadlines(l, std::chrono::microseconds(us), 1s);
            const int c2 = co_await handshake_with_deadlines(l, 1s, std::chrono::microseconds(us));
            full += (c1 == 2) + (c2 == 2);
        }
        CHECK(open_fds() == base);
        const int both = co_await handshake_with_deadlines(l, 1s, 1s);
        CHECK(both == 2); // and the listener still serves
        (void)full;
    }());
}

TEST_CASE("tls cancel - a read_exact that times out mid-wait loses no byte", "[tls][cancel]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        char buf[12];
        for (int round = 0; round < 3; ++round) {
            co_await p.server.write_all("abc");
            bool timed_out = false;
            try {
                co_await coring::timeout(50ms, p.client.read_exact(std::span<char>(buf)));
            } catch (const coring::timeout_error&) {
                timed_out = true;
            }
            CHECK(timed_out);
            co_await p.server.write_all("defg");
            co_await p.server.write_all("hijkl");
            co_await p.client.read_exact(std::span<char>(buf));
            CHECK(std::string_view(buf, 12) == "abcdefghijkl");
        }
    }());
}

TEST_CASE("tls cancel - a read cancelled through its task handle, then read again: no byte lost", "[tls][cancel]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        for (int round = 0; round < 5; ++round) {
            auto reader = coring::spawn(
                [](coring::tls::stream& s) -> task<std::string> { co_return co_await s.read_until("\n"); }(p.client));
            co_await coring::sleep(5ms);
            if (round % 2) co_await p.server.write_all("par"); // a piece arrives before the cancellation
            co_await coring::sleep(5ms);
            reader.cancel();
            bool cancelled = false;
            try {
                (void)co_await std::move(reader);
            } catch (const coring::cancelled_error&) {
                cancelled = true;
            }
            CHECK(cancelled);
            const std::string rest = (round % 2 ? "t " : "part ") + std::to_string(round) + "\n";
            co_await p.server.write_all(rest);
            const std::string line = co_await p.client.read_until("\n");
            CHECK(line == "part " + std::to_string(round) + "\n");
        }
    }());
}

TEST_CASE("tls cancel - a read_until timeout keeps the partial line", "[tls][cancel]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        co_await p.server.write_all("partial ");
        bool timed_out = false;
        try {
            (void)co_await coring::timeout(100ms, p.client.read_until("\n"));
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        CHECK(timed_out);
        CHECK(p.client.buffered() == 8);
        co_await p.server.write_all("line\nnext\n");
        const std::string a = co_await p.client.read_until("\n");
        const std::string b = co_await p.client.read_until("\n");
        CHECK(a == "partial line\n");
        CHECK(b == "next\n");
    }());
}

TEST_CASE(
    "tls cancel - a write that times out stops the stream's writing (no record sent twice), close() stays bounded",
    "[tls][cancel]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        static_cast<coring::tcp_stream&>(p.client.socket()).set_send_buffer_size(4096);
        const std::string big(8u << 20, 'x');
        bool timed_out = false;
        try {
            co_await coring::timeout(200ms, p.client.write_all(big));
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        CHECK(timed_out);
        const std::string refused = co_await coring_test::logic_error_of(p.client.write_all("more"));
        CHECK_FALSE(refused.empty());
        coring_test::stopwatch sw;
        co_await p.client.close();
        CHECK(sw.seconds() < 2.0);
    }());
}

TEST_CASE("tls cancel - a write cancelled while it waits behind another write stops the stream's writing, its "
          "records still go out once",
          "[tls][cancel]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        static_cast<coring::tcp_stream&>(p.client.socket()).set_send_buffer_size(4096);
        static_cast<coring::tcp_stream&>(p.server.socket()).set_receive_buffer_size(16384);
        // One task's write blocks (the server does not read yet); a second write's records are made and wait for the
        // socket behind it, and that second write is cancelled. Its records will still go out (they are in OpenSSL's
        // output, encrypted in sequence), so it must not let its caller believe they were not written.
        auto first = coring::spawn([](coring::tls::stream& s) -> task<std::string> {
            const std::string big(1u << 20, 'a');
            try {
                co_await s.write_all(big);
            } catch (const std::logic_error& e) {
                co_return e.what();
            }
            co_return std::string();
        }(p.client));
        co_await coring::sleep(20ms);
        bool timed_out = false;
        try {
            co_await coring::timeout(50ms, p.client.write_all("second\n"));
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        CHECK(timed_out);
        // (Before the fix the third write waited behind the first, forever.)
        const std::string refused =
            co_await coring::timeout(2s, coring_test::logic_error_of(p.client.write_all("third\n")));
        CHECK(refused.find("interrupted") != std::string::npos);
        // The server reads what arrives: "second\n" exactly once, "third\n" never.
        std::string got;
        char buf[65536];
        for (;;) {
            std::size_t n = 0;
            try {
                n = co_await coring::timeout(500ms, p.server.read(std::span<char>(buf)));
            } catch (const std::exception&) {
                break;
            }
            if (n == 0) break;
            got.append(buf, n);
        }
        const std::string first_error = co_await std::move(first); // stopped by the broken stream, or done
        INFO(first_error);
        const std::size_t at = got.find("second\n");
        CHECK(at != std::string::npos);
        CHECK(got.find("second\n", at + 1) == std::string::npos);
        CHECK(got.find("third") == std::string::npos);
        CHECK(got.size() <= (1u << 20) + 7);
        co_await p.client.close();
    }());
}

TEST_CASE("tls cancel - a shutdown cancelled while it waits behind a write: the peer still gets all the data, then "
          "close_notify",
          "[tls][cancel]") {
    coring::run([]() -> task<> {
        auto p = co_await tls_connect_pair(client_ctx(), server_ctx());
        static_cast<coring::tcp_stream&>(p.client.socket()).set_send_buffer_size(4096);
        static_cast<coring::tcp_stream&>(p.server.socket()).set_receive_buffer_size(16384);
        const std::size_t total =
            64 * 1024; // one write(): a write_all() would be refused its next round after shutdown
        auto writer = coring::spawn([](coring::tls::stream& s, std::size_t total) -> task<> {
            co_await s.write_all(std::string(total, 'a'));
        }(p.client, total));
        co_await coring::sleep(20ms);
        bool timed_out = false;
        try {
            co_await coring::timeout(50ms, p.client.shutdown());
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        CHECK(timed_out);
        // Its close_notify is queued behind the writer's records: it goes out after them, by the writer or by close().
        std::size_t got = 0;
        char buf[65536];
        for (;;) {
            const std::size_t n = co_await coring::timeout(5s, p.server.read(std::span<char>(buf)));
            if (n == 0) break; // close_notify: a truncation would throw tls::truncated
            got += n;
        }
        CHECK(got == total);
        CHECK(p.server.peer_closed());
        co_await std::move(writer);
        co_await p.client.close();
        co_await p.server.close();
    }());
}

} // namespace test_tls_cancel
