// Client session resumption: a client context keeps the sessions servers send (TLS 1.3 tickets, TLS 1.2 sessions)
// per peer "host:port" and resumes with them, never under another name; off on request; against coring, openssl
// s_server and through http::client.

#include "support/tls_helpers.hpp"

#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <catch2/catch.hpp>

#if defined(CORING_HTTP_TLS) && CORING_HTTP_TLS
#include <coring/http.hpp>
#endif

#include <array>
#include <atomic>
#include <exception>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test_tls_resume {

using namespace std::chrono_literals;
using coring::task;
using coring_test::piped_process;
using coring_test::tls_certs;

namespace {

constexpr const char* openssl_bin = "/usr/bin/openssl";

/// Serves `n` TLS connections one after the other: says "hello\n", then reads until the client ends.
task<> serve(coring::tcp_listener& l, coring::tls::context ctx, int n) {
    for (int i = 0; i < n; ++i) {
        coring::tcp_stream tcp = co_await l.accept();
        coring::tls::stream s = co_await coring::tls::stream::accept(ctx, std::move(tcp));
        co_await s.write_all("hello\n");
        char buf[256];
        try {
            for (;;) {
                const std::size_t got = co_await s.read(std::span<char>(buf));
                if (got == 0) break;
            }
        } catch (const coring::tls::error&) {} // a client that left without close_notify
        co_await s.close();
    }
}

/// What one client connection saw.
struct visit {
    bool reused = false;
    std::string version;
    std::string line;
};

/// Connects to 127.0.0.1:`port` checking `name`, reads the greeting (the tickets come before it) and closes.
task<visit> visit_once(coring::tls::context ctx, std::uint16_t port, std::string name) {
    coring::tcp_stream tcp =
        co_await coring::tcp_stream::connect(coring::address::parse("127.0.0.1:" + std::to_string(port)));
    coring::tls::stream s = co_await coring::tls::stream::connect(std::move(ctx), std::move(tcp), std::move(name));
    visit v;
    v.reused = s.session_reused();
    v.version = std::string(s.version());
    v.line = co_await coring::timeout(5s, s.read_until("\n"));
    co_await s.close();
    co_return v;
}

/// Runs `body(port)` against a coring server of `n` connections with `server_ctx`.
template <class Body>
void with_server(coring::tls::context server_ctx, int n, Body body) {
    coring::run([](coring::tls::context server_ctx, int n, Body body) -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        auto serving = coring::spawn(serve(l, std::move(server_ctx), n));
        task<> running = body(l.local_address().port());
        co_await std::move(running);
        co_await coring::timeout(5s, std::move(serving));
    }(std::move(server_ctx), n, std::move(body)));
}

} // namespace

TEST_CASE("tls resume - TLS 1.3: the second connection resumes with a ticket, and the next one too", "[tls][resume]") {
    auto client = coring_test::test_client_context();
    CHECK(client.session_cache());
    auto server = coring_test::test_server_context();
    with_server(server, 3, [&client](std::uint16_t port) -> task<> {
        const visit first = co_await visit_once(client, port, "localhost");
        CHECK_FALSE(first.reused);
        CHECK(first.version == "TLSv1.3");
        CHECK(first.line == "hello\n");
        const std::size_t kept = client.cached_sessions();
        CHECK(kept >= 1); // OpenSSL's server sends two tickets
        CHECK(kept <= 2); // at most 2 per peer
        const visit second = co_await visit_once(client, port, "localhost");
        CHECK(second.reused);
        CHECK(second.version == "TLSv1.3");
        CHECK(second.line == "hello\n");
        const visit third = co_await visit_once(client, port, "localhost");
        CHECK(third.reused);
        CHECK(client.cached_sessions() <= 2);
    });
    CHECK(SSL_CTX_sess_hits(server.native_handle()) == 2);
}

TEST_CASE("tls resume - a TLS 1.3 ticket is used once: taken out of the cache when offered", "[tls][resume]") {
    auto client = coring_test::test_client_context();
    auto server = coring_test::test_server_context();
    SSL_CTX_set_num_tickets(server.native_handle(), 1); // one ticket per connection
    with_server(server, 2, [&client](std::uint16_t port) -> task<> {
        const visit first = co_await visit_once(client, port, "localhost");
        CHECK_FALSE(first.reused);
        CHECK(client.cached_sessions() == 1);
        coring::tcp_stream tcp =
            co_await coring::tcp_stream::connect(coring::address::parse("127.0.0.1:" + std::to_string(port)));
        coring::tls::stream s = co_await coring::tls::stream::connect(client, std::move(tcp), "localhost");
        CHECK(s.session_reused());
        CHECK(client.cached_sessions() == 0); // the ticket went; the server's next one is not read yet
        const std::string line = co_await coring::timeout(5s, s.read_until("\n"));
        CHECK(line == "hello\n");
        CHECK(client.cached_sessions() == 1); // a fresh ticket from the resumed connection
        co_await s.close();
    });
}

TEST_CASE("tls resume - a connection dropped without close() leaves its ticket usable", "[tls][resume]") {
    auto client = coring_test::test_client_context();
    auto server = coring_test::test_server_context();
    SSL_CTX_set_num_tickets(server.native_handle(), 1);
    with_server(server, 2, [&client](std::uint16_t port) -> task<> {
        {
            coring::tcp_stream tcp =
                co_await coring::tcp_stream::connect(coring::address::parse("127.0.0.1:" + std::to_string(port)));
            coring::tls::stream s = co_await coring::tls::stream::connect(client, std::move(tcp), "localhost");
            const std::string line = co_await coring::timeout(5s, s.read_until("\n"));
            CHECK(line == "hello\n");
        } // destroyed: no close_notify (OpenSSL would mark the session unresumable)
        CHECK(client.cached_sessions() == 1);
        const visit v = co_await visit_once(client, port, "localhost");
        CHECK(v.reused);
    });
}

TEST_CASE("tls resume - never across server names: localhost's session is not offered to 127.0.0.1", "[tls][resume]") {
    auto client = coring_test::test_client_context();
    with_server(coring_test::test_server_context(), 5, [&client](std::uint16_t port) -> task<> {
        const visit a = co_await visit_once(client, port, "localhost");
        CHECK_FALSE(a.reused);
        const visit b = co_await visit_once(client, port, "127.0.0.1");
        CHECK_FALSE(b.reused); // same server, same port, another name
        const visit c = co_await visit_once(client, port, "localhost");
        CHECK(c.reused);
        const visit d = co_await visit_once(client, port, "127.0.0.1");
        CHECK(d.reused); // its own ticket, from b
        // A copy of the context shares the cache.
        coring::tls::context copy = client;
        const visit e = co_await visit_once(copy, port, "localhost");
        CHECK(e.reused);
    });
}

TEST_CASE("tls resume - set_session_cache(false): never resumed, nothing kept", "[tls][resume]") {
    auto client = coring_test::test_client_context();
    client.set_session_cache(false);
    CHECK_FALSE(client.session_cache());
    auto server = coring_test::test_server_context();
    with_server(server, 3, [&client](std::uint16_t port) -> task<> {
        for (int i = 0; i < 3; ++i) {
            const visit v = co_await visit_once(client, port, "localhost");
            CHECK_FALSE(v.reused);
            CHECK(v.line == "hello\n");
            CHECK(client.cached_sessions() == 0);
        }
    });
    CHECK(SSL_CTX_sess_hits(server.native_handle()) == 0);
    // Turned off later: what was kept goes.
    auto later = coring_test::test_client_context();
    with_server(coring_test::test_server_context(), 2, [&later](std::uint16_t port) -> task<> {
        (void)co_await visit_once(later, port, "localhost");
        CHECK(later.cached_sessions() > 0);
        later.set_session_cache(false);
        CHECK(later.cached_sessions() == 0);
        const visit v = co_await visit_once(later, port, "localhost");
        CHECK_FALSE(v.reused);
    });
}

TEST_CASE("tls resume - TLS 1.2: resumed, and again (the session goes back after use)", "[tls][resume]") {
    auto client = coring_test::test_client_context();
    auto server = coring_test::test_server_context();
    SSL_CTX_set_max_proto_version(server.native_handle(), TLS1_2_VERSION);
    with_server(server, 3, [&client](std::uint16_t port) -> task<> {
        const visit first = co_await visit_once(client, port, "localhost");
        CHECK_FALSE(first.reused);
        CHECK(first.version == "TLSv1.2");
        CHECK(client.cached_sessions() == 1);
        const visit second = co_await visit_once(client, port, "localhost");
        CHECK(second.reused);
        CHECK(second.version == "TLSv1.2");
        CHECK(second.line == "hello\n");
        const visit third = co_await visit_once(client, port, "localhost");
        CHECK(third.reused);
        CHECK(client.cached_sessions() == 1);
    });
    CHECK(SSL_CTX_sess_hits(server.native_handle()) == 2);
}

TEST_CASE("tls resume - at most 2 sessions per peer, 1,000 in all", "[tls][resume]") {
    auto client = coring_test::test_client_context();
    auto server = coring_test::test_server_context();
    SSL_CTX_set_num_tickets(server.native_handle(), 5);
    with_server(server, 1, [&client](std::uint16_t port) -> task<> {
        (void)co_await visit_once(client, port, "localhost");
        CHECK(client.cached_sessions() == 2); // five tickets came, the newest two stay
    });
}

namespace {

/// One of the threads of the shared-context case: what its loop saw.
struct thread_visits {
    std::vector<visit> visits;
    std::exception_ptr failure;
};

/// A thread's loop: serves `n` connections on its listener (published in `ports[me]`) and, once both threads have
/// bound theirs, makes `n` connections itself, alternately to either listener.
task<> serve_and_visit(int me, coring::tls::context client, coring::tls::context server, int n,
                       std::array<std::atomic<std::uint16_t>, 2>& ports, std::latch& bound, thread_visits& out) {
    auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    ports[static_cast<std::size_t>(me)] = l.local_address().port();
    // Blocks this loop briefly (nothing runs on it yet), never for good: the other thread may have failed to bind.
    bound.count_down();
    for (const auto until = std::chrono::steady_clock::now() + 10s; !bound.try_wait();) {
        if (std::chrono::steady_clock::now() > until) throw std::runtime_error("the other thread bound no listener");
        std::this_thread::sleep_for(1ms);
    }
    auto serving = coring::spawn(serve(l, server, n));
    for (int i = 0; i < n; ++i) {
        const std::uint16_t port = ports[static_cast<std::size_t>(i % 2)];
        out.visits.push_back(co_await visit_once(client, port, "localhost"));
    }
    co_await coring::timeout(10s, std::move(serving));
}

} // namespace

TEST_CASE("tls resume - one client and one server context shared by loops on two threads", "[tls][resume][threads]") {
    // Each thread's loop serves its own listener and connects to both, so the sessions a connection on one thread
    // received are offered by the other thread's next connection to that server, and both servers issue and accept
    // tickets from the one server context. Catch's assertions are made here, on this thread, after the joins.
    auto client = coring_test::test_client_context();
    auto server = coring_test::test_server_context();
    constexpr int per_thread = 16; // even: each server gets as many connections as each client makes
    std::array<std::atomic<std::uint16_t>, 2> ports{};
    std::latch bound(2);
    std::array<thread_visits, 2> seen;
    std::vector<std::thread> threads;
    for (int me = 0; me < 2; ++me)
        threads.emplace_back([&, me] {
            try {
                coring::run(
                    serve_and_visit(me, client, server, per_thread, ports, bound, seen[static_cast<std::size_t>(me)]));
            } catch (...) {
                seen[static_cast<std::size_t>(me)].failure = std::current_exception();
            }
        });
    for (std::thread& t : threads) t.join();
    int reused = 0;
    for (const thread_visits& t : seen) {
        if (t.failure) std::rethrow_exception(t.failure);
        REQUIRE(t.visits.size() == per_thread);
        for (const visit& v : t.visits) {
            CHECK(v.line == "hello\n");
            CHECK(v.version == "TLSv1.3");
            reused += v.reused ? 1 : 0;
        }
    }
    // At most the first connection of each thread to each server finds no ticket kept: a connection stores its
    // tickets (2 after a full handshake, 1 after a resumed one) before its thread makes the next, and with one
    // connection a thread in flight the 2 kept per peer do not run out after both threads' first visits (every
    // interleaving of the takes and stores enumerated).
    CHECK(reused >= 2 * per_thread - 4);
    CHECK(SSL_CTX_sess_hits(server.native_handle()) == reused);
    CHECK(client.cached_sessions() <= 4);
}

TEST_CASE("tls resume - against openssl s_server, TLS 1.3 and 1.2", "[tls][resume][peers][openssl]") {
    REQUIRE(coring_test::executable(openssl_bin));
    for (const std::string version : {"-tls1_3", "-tls1_2"}) {
        INFO(version);
        const std::uint16_t port = coring_test::free_port();
        const auto& c = tls_certs::get();
        piped_process srv({openssl_bin, "s_server", "-accept", "127.0.0.1:" + std::to_string(port), "-cert",
                           c.leaf.cert, "-key", c.leaf.key, "-naccept", "3", version, "-rev"});
        coring::run([](piped_process& srv, std::uint16_t port) -> task<> {
            co_await srv.expect("ACCEPT", 10s); // s_server listens
            auto ctx = coring_test::test_client_context();
            for (int i = 0; i < 3; ++i) {
                coring::tcp_stream tcp =
                    co_await coring::tcp_stream::connect(coring::address::parse("127.0.0.1:" + std::to_string(port)));
                coring::tls::stream s = co_await coring::tls::stream::connect(ctx, std::move(tcp), "localhost");
                const bool reused = s.session_reused();
                CHECK(reused == (i > 0));
                co_await s.write_all("abc\n");
                const std::string back = co_await coring::timeout(5s, s.read_until("\n"));
                CHECK(back == "cba\n");
                co_await s.close();
            }
        }(srv, port));
    }
}

#if defined(CORING_HTTP_TLS) && CORING_HTTP_TLS
TEST_CASE("tls resume - http::client resumes on a new connection to the same origin", "[tls][resume][http]") {
    auto server = coring_test::test_server_context();
    coring::http::server app;
    app.get("/", [](coring::http::request&) -> task<coring::http::response> {
        co_return coring::http::response::text("ok");
    });
    coring::http::client_options o;
    o.tls = coring_test::test_client_context();
    o.max_idle_per_host = 0; // a new connection per request
    coring::http::client client(o);
    coring::run([](coring::http::server& app, coring::http::client& client, coring::tls::context server) -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        auto serving = coring::spawn(app.serve(l, server));
        const std::string url = "https://localhost:" + std::to_string(l.local_address().port()) + "/";
        for (int i = 0; i < 3; ++i) {
            task<coring::http::client_response> getting = client.get(url);
            const coring::http::client_response r = co_await std::move(getting);
            CHECK(r.status == 200);
            CHECK(r.body == "ok");
        }
        app.shutdown(1s);
        co_await serving;
    }(app, client, server));
    CHECK(SSL_CTX_sess_hits(server.native_handle()) == 2);
}
#endif

} // namespace test_tls_resume
