// Certificate verification: every bad certificate fails the handshake with a tls::error naming the peer and OpenSSL's
// reason; a good one passes, by host name and by IP address; insecure_skip_verification() connects to anything.

#include "support/tls_helpers.hpp"

#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <string>

namespace test_tls_verify {

using namespace std::chrono_literals;
using coring::task;
using coring_test::cert_files;
using coring_test::tls_certs;

namespace {

struct outcome {
    bool connected = false;
    std::string client_error; // what() of the client's tls::error
    std::string server_error; // what() of the server's failure, if any
    std::string alpn;
    std::string peer;
};

/// The server side of one attempt: accepts, handshakes, and on success answers one line.
task<> serve_one(coring::tcp_listener& l, coring::tls::context ctx, std::string& error) {
    auto tcp = co_await l.accept();
    try {
        auto s = co_await coring::tls::stream::accept(std::move(ctx), std::move(tcp));
        std::string line = co_await s.read_until("\n");
        co_await s.write_all(line);
        co_await s.close();
    } catch (const std::exception& e) {
        error = e.what();
    }
}

/// Connects a client with `client_ctx` to a server presenting `files`, checking the name `name`.
task<outcome> attempt(coring::tls::context client_ctx, cert_files files, std::string name) {
    outcome o;
    auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    auto server = coring::spawn(serve_one(l, coring::tls::context::server(files.cert, files.key), o.server_error));
    auto tcp = co_await coring::tcp_stream::connect(l.local_address());
    o.peer = name + ":" + std::to_string(l.local_address().port());
    try {
        auto s = co_await coring::tls::stream::connect(std::move(client_ctx), std::move(tcp), name);
        o.alpn = std::string(s.alpn());
        co_await s.write_all("ping\n");
        const std::string echo = co_await s.read_until("\n");
        o.connected = echo == "ping\n";
        co_await s.close();
    } catch (const coring::tls::error& e) {
        o.client_error = e.what();
    }
    co_await coring::timeout(5s, std::move(server));
    co_return o;
}

outcome run_attempt(coring::tls::context client_ctx, const cert_files& files, std::string name) {
    return coring::run(attempt(std::move(client_ctx), files, std::move(name)));
}

void check_refused(const outcome& o, const std::string& reason) {
    INFO("client: " << o.client_error << "\nserver: " << o.server_error);
    CHECK_FALSE(o.connected);
    CHECK(o.client_error.find("coring: tls handshake with " + o.peer + ": ") == 0);
    CHECK(o.client_error.find("certificate verify failed") != std::string::npos);
    CHECK(o.client_error.find(reason) != std::string::npos);
    CHECK_FALSE(o.server_error.empty()); // the server saw the client's alert, or the connection end
}

} // namespace

TEST_CASE("tls verify - a certificate from the trusted CA passes by host name and by IP address", "[tls][verify]") {
    const auto& c = tls_certs::get();
    SECTION("localhost") {
        const outcome o = run_attempt(coring_test::test_client_context(), c.leaf, "localhost");
        INFO(o.client_error << " / " << o.server_error);
        CHECK(o.connected);
    }
    SECTION("127.0.0.1 (IP SAN)") {
        const outcome o = run_attempt(coring_test::test_client_context(), c.leaf, "127.0.0.1");
        INFO(o.client_error << " / " << o.server_error);
        CHECK(o.connected);
    }
}

TEST_CASE("tls verify - an unknown CA fails: unable to get local issuer certificate", "[tls][verify]") {
    // The system trust store does not hold the test CA.
    check_refused(run_attempt(coring::tls::context::client(), tls_certs::get().leaf, "localhost"),
                  "unable to get local issuer certificate");
}

TEST_CASE("tls verify - the system trust store is loaded once and shared, and a CA added to one context stays there",
          "[tls][verify]") {
    const auto& c = tls_certs::get();
    auto a = coring::tls::context::client();
    auto b = coring::tls::context::client();
    X509_STORE* shared = SSL_CTX_get_cert_store(a.native_handle());
    CHECK(SSL_CTX_get_cert_store(b.native_handle()) == shared); // the bundle was parsed once, not per context
    const int system_objects = sk_X509_OBJECT_num(X509_STORE_get0_objects(shared));
    CHECK(system_objects > 0); // Debian's ca-certificates bundle

    a.load_ca(c.ca);
    X509_STORE* own = SSL_CTX_get_cert_store(a.native_handle());
    CHECK(own != shared);
    // The copy keeps every certificate the system store holds, plus the test CA.
    CHECK(sk_X509_OBJECT_num(X509_STORE_get0_objects(own)) == system_objects + 1);
    CHECK(sk_X509_OBJECT_num(X509_STORE_get0_objects(shared)) == system_objects);

    const outcome with_ca = run_attempt(a, c.leaf, "localhost");
    INFO(with_ca.client_error << " / " << with_ca.server_error);
    CHECK(with_ca.connected);
    // Contexts made before and after it still trust the system store only.
    check_refused(run_attempt(b, c.leaf, "localhost"), "unable to get local issuer certificate");
    check_refused(run_attempt(coring::tls::context::client(), c.leaf, "localhost"),
                  "unable to get local issuer certificate");
    // load_ca_pem detaches the same way.
    auto d = coring::tls::context::client();
    std::ifstream f(c.ca);
    const std::string pem((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    d.load_ca_pem(pem);
    CHECK(SSL_CTX_get_cert_store(d.native_handle()) != shared);
    CHECK(run_attempt(d, c.leaf, "localhost").connected);
    CHECK(sk_X509_OBJECT_num(X509_STORE_get0_objects(shared)) == system_objects);
}

TEST_CASE("tls verify - an expired certificate fails: certificate has expired", "[tls][verify]") {
    check_refused(run_attempt(coring_test::test_client_context(), tls_certs::get().expired, "localhost"),
                  "certificate has expired");
}

TEST_CASE("tls verify - a certificate for another host fails: hostname mismatch", "[tls][verify]") {
    check_refused(run_attempt(coring_test::test_client_context(), tls_certs::get().wrong_host, "localhost"),
                  "hostname mismatch");
}

TEST_CASE("tls verify - a certificate without the IP address connected to fails: IP address mismatch",
          "[tls][verify]") {
    check_refused(run_attempt(coring_test::test_client_context(), tls_certs::get().wrong_host, "127.0.0.1"),
                  "IP address mismatch");
}

TEST_CASE("tls verify - a self-signed certificate fails", "[tls][verify]") {
    check_refused(run_attempt(coring_test::test_client_context(), tls_certs::get().self_signed, "localhost"),
                  "self-signed certificate");
}

TEST_CASE("tls verify - insecure_skip_verification connects to a self-signed and a wrong-host certificate",
          "[tls][verify]") {
    const auto& c = tls_certs::get();
    for (const cert_files* f : {&c.self_signed, &c.wrong_host, &c.expired}) {
        auto ctx = coring::tls::context::client();
        ctx.insecure_skip_verification();
        const outcome o = run_attempt(ctx, *f, "localhost");
        INFO(f->cert << ": " << o.client_error << " / " << o.server_error);
        CHECK(o.connected);
    }
}

TEST_CASE("tls verify - a server requiring a client certificate refuses a client without one, accepts one with one",
          "[tls][verify]") {
    const auto& c = tls_certs::get();
    coring::run([](const tls_certs* c) -> task<> {
        for (const bool with_cert : {false, true}) {
            auto sctx = coring_test::test_server_context();
            sctx.load_ca(c->ca).require_client_certificate();
            auto cctx = coring_test::test_client_context();
            if (with_cert) cctx.use_certificate(c->client.cert, c->client.key);
            auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
            std::string server_error;
            auto server = coring::spawn(serve_one(l, sctx, server_error));
            auto tcp = co_await coring::tcp_stream::connect(l.local_address());
            std::string client_error, echo;
            try {
                // TLS 1.3: the client's handshake ends before the server has checked its certificate, so the refusal
                // arrives at the first read.
                auto s = co_await coring::tls::stream::connect(cctx, std::move(tcp), "localhost");
                co_await s.write_all("hi\n");
                echo = co_await s.read_until("\n");
            } catch (const coring::tls::error& e) {
                client_error = e.what();
            }
            co_await coring::timeout(5s, std::move(server));
            INFO("with cert " << with_cert << ": client: " << client_error << " server: " << server_error);
            if (with_cert) {
                CHECK(echo == "hi\n");
                CHECK(server_error.empty());
            } else {
                CHECK(echo.empty());
                CHECK(server_error.find("coring: tls handshake with 127.0.0.1:") == 0);
                CHECK(server_error.find("peer did not return a certificate") != std::string::npos);
                CHECK(client_error.find("alert") != std::string::npos);
            }
        }
    }(&c));
}

TEST_CASE("tls verify - a later error on a connection that skipped verification does not blame the certificate",
          "[tls][verify]") {
    // OpenSSL keeps the failed verification result of a connection that skipped verification; it used to be added to
    // every error's reason ("...: bad record mac: self-signed certificate").
    coring::run([]() -> task<> {
        auto cctx = coring::tls::context::client();
        cctx.insecure_skip_verification();
        auto p = co_await coring_test::tls_connect_pair(cctx,
                                                        coring_test::test_server_context(tls_certs::get().self_signed));
        // An application-data record that does not decrypt, written under the TLS layer.
        co_await p.server.socket().write_all(std::string_view("\x17\x03\x03\x00\x20"
                                                              "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                                              37));
        std::string what;
        try {
            (void)co_await p.client.read_until("\n");
        } catch (const coring::tls::error& e) {
            what = e.what();
        }
        INFO(what);
        CHECK(what.find("coring: tls read from localhost:") == 0);
        CHECK(what.find("self-signed") == std::string::npos);
    }());
}

} // namespace test_tls_verify
