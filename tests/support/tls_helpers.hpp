#pragma once

// Fixtures of the TLS tests: contexts made from the test PKI, a connected pair of TLS streams over loopback TCP, and
// the peers they run against (openssl s_server / s_client, CPython: support/peer_process.hpp).

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"
#include "support/peer_process.hpp"
#include "support/tls_certs.hpp"

#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace coring_test {

/// A client context trusting the test CA.
inline coring::tls::context test_client_context() {
    auto ctx = coring::tls::context::client();
    ctx.load_ca(tls_certs::get().ca);
    return ctx;
}
/// A server context presenting `files` (the CA-signed leaf by default).
inline coring::tls::context test_server_context(const cert_files& files = tls_certs::get().leaf) {
    return coring::tls::context::server(files.cert, files.key);
}

/// Two ends of one TLS connection over loopback TCP.
struct tls_pair {
    coring::tls::stream client;
    coring::tls::stream server;
};

inline coring::task<coring::tls::stream> tls_accept_one(coring::tcp_listener& l, coring::tls::context ctx) {
    coring::tcp_stream s = co_await l.accept();
    co_return co_await coring::tls::stream::accept(std::move(ctx), std::move(s));
}

/// Connects a client (checking `name`) to a fresh TLS server on 127.0.0.1 and returns both ends.
inline coring::task<tls_pair> tls_connect_pair(coring::tls::context client_ctx, coring::tls::context server_ctx,
                                               std::string name = "localhost") {
    auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    auto accepted = coring::spawn(tls_accept_one(l, std::move(server_ctx)));
    coring::tcp_stream tcp = co_await coring::tcp_stream::connect(l.local_address());
    coring::tls::stream client = co_await coring::tls::stream::connect(std::move(client_ctx), std::move(tcp), name);
    coring::tls::stream server = co_await accepted;
    co_return tls_pair{std::move(client), std::move(server)};
}

/// How many connections a "many connections" test makes: CORING_TLS_CONNECTIONS, else `normal`, or `sanitized`
/// under AddressSanitizer or ThreadSanitizer.
inline int tls_connection_count([[maybe_unused]] int normal, [[maybe_unused]] int sanitized) {
    if (const char* e = std::getenv("CORING_TLS_CONNECTIONS")) return std::max(1, std::atoi(e));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return sanitized;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return sanitized;
#else
    return normal;
#endif
#else
    return normal;
#endif
}

/// Awaits `t` and returns the what() of the std::logic_error it threw, empty if none (Catch's macros must not hold a
/// co_await).
inline coring::task<std::string> logic_error_of(coring::task<> t) {
    try {
        co_await std::move(t);
    } catch (const std::logic_error& e) {
        co_return e.what();
    }
    co_return std::string();
}

} // namespace coring_test
