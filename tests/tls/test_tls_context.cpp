// tls::context: settings, and errors that name the file and OpenSSL's reason.

#include "support/tls_helpers.hpp"

#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>

namespace test_tls_context {

using coring::task;
using coring_test::tls_certs;

namespace {

std::string what_of_server(const std::filesystem::path& cert, const std::filesystem::path& key) {
    try {
        (void)coring::tls::context::server(cert, key);
    } catch (const coring::tls::error& e) {
        return e.what();
    }
    return "(no error)";
}

std::string slurp(const std::filesystem::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

} // namespace

TEST_CASE("tls::context - a missing certificate file is a tls::error naming the file", "[tls][context]") {
    const auto& c = tls_certs::get();
    const auto missing = c.dir / "no-such-cert.pem";
    const std::string what = what_of_server(missing, c.leaf.key);
    INFO(what);
    CHECK(what.find("coring: tls: loading the certificate chain") != std::string::npos);
    CHECK(what.find(missing.string()) != std::string::npos);
    CHECK(what.find("No such file") != std::string::npos); // OpenSSL's reason (the system error it queued)
}

TEST_CASE("tls::context - a missing key file is a tls::error naming the file", "[tls][context]") {
    const auto& c = tls_certs::get();
    const auto missing = c.dir / "no-such-key.pem";
    const std::string what = what_of_server(c.leaf.cert, missing);
    INFO(what);
    CHECK(what.find("loading the private key") != std::string::npos);
    CHECK(what.find(missing.string()) != std::string::npos);
}

TEST_CASE("tls::context - a key that does not match the certificate names both files", "[tls][context]") {
    const auto& c = tls_certs::get();
    const std::string what = what_of_server(c.leaf.cert, c.other_key);
    INFO(what);
    CHECK(what.find(c.other_key.string()) != std::string::npos);
    CHECK(what.find(c.leaf.cert.string()) != std::string::npos);
    CHECK(what.find("does not match") != std::string::npos);
}

TEST_CASE("tls::context - a file that is not PEM is a tls::error naming it", "[tls][context]") {
    const auto& c = tls_certs::get();
    const auto junk = c.dir / "junk.pem";
    std::ofstream(junk) << "not a certificate\n";
    const std::string what = what_of_server(junk, c.leaf.key);
    INFO(what);
    CHECK(what.find(junk.string()) != std::string::npos);
}

TEST_CASE("tls::context - load_ca of a missing file names it", "[tls][context]") {
    const auto& c = tls_certs::get();
    auto ctx = coring::tls::context::client();
    std::string what;
    try {
        ctx.load_ca(c.dir / "no-such-ca.pem");
    } catch (const coring::tls::error& e) {
        what = e.what();
    }
    INFO(what);
    CHECK(what.find((c.dir / "no-such-ca.pem").string()) != std::string::npos);
}

TEST_CASE("tls::context - server_from_memory rejects text that is not PEM and a mismatched key", "[tls][context]") {
    const auto& c = tls_certs::get();
    CHECK_THROWS_AS(coring::tls::context::server_from_memory("garbage", slurp(c.leaf.key)), coring::tls::error);
    CHECK_THROWS_AS(coring::tls::context::server_from_memory(slurp(c.leaf.cert), "garbage"), coring::tls::error);
    CHECK_THROWS_AS(coring::tls::context::server_from_memory(slurp(c.leaf.cert), slurp(c.other_key)),
                    coring::tls::error);
    CHECK_NOTHROW(coring::tls::context::server_from_memory(slurp(c.leaf.cert) + slurp(c.ca), slurp(c.leaf.key)));
}

TEST_CASE("tls::context - defaults: clients verify, the flag says when they do not", "[tls][context]") {
    auto client = coring::tls::context::client();
    CHECK(client.verifies());
    CHECK_FALSE(client.is_server());
    CHECK((SSL_CTX_get_verify_mode(client.native_handle()) & SSL_VERIFY_PEER) != 0);
    CHECK(SSL_CTX_get_min_proto_version(client.native_handle()) == TLS1_2_VERSION);
    CHECK((SSL_CTX_get_options(client.native_handle()) & SSL_OP_NO_RENEGOTIATION) != 0);
    client.insecure_skip_verification();
    CHECK_FALSE(client.verifies());
    auto server = coring_test::test_server_context();
    CHECK(server.is_server());
}

TEST_CASE("tls::context - ALPN names must have 1 to 255 bytes", "[tls][context]") {
    auto ctx = coring::tls::context::client();
    CHECK_THROWS_AS(ctx.set_alpn({"h2", ""}), std::invalid_argument);
    CHECK_THROWS_AS(ctx.set_alpn({std::string_view(std::string(256, 'x'))}), std::invalid_argument);
    CHECK_NOTHROW(ctx.set_alpn({"h2", "http/1.1"}));
}

TEST_CASE("tls::context - a server context cannot connect and a client context cannot accept", "[tls][context]") {
    coring::run([]() -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        auto tcp = co_await coring::tcp_stream::connect(l.local_address());
        auto peer = co_await l.accept();
        bool refused = false;
        try {
            (void)co_await coring::tls::stream::connect(coring_test::test_server_context(), std::move(tcp),
                                                        "localhost");
        } catch (const std::invalid_argument&) {
            refused = true;
        }
        CHECK(refused);
        refused = false;
        try {
            (void)co_await coring::tls::stream::accept(coring_test::test_client_context(), std::move(peer));
        } catch (const std::invalid_argument&) {
            refused = true;
        }
        CHECK(refused);
    }());
}

} // namespace test_tls_context
