// libFuzzer target: the TLS record path of coring::tls::stream. A coring TLS server (tls::stream::accept, then
// read_until/read on a real event loop) serves one end of a socketpair; the fuzzer's bytes are what arrives at it:
//
//   first byte even: raw bytes from the first byte on (garbage ClientHellos, alerts, records of any type);
//   first byte odd:  a real handshake first (an OpenSSL client on memory BIOs, its ciphertext carried over the
//                    socketpair), then valid application records and the fuzzer's bytes as further "records".
//
// Bytes go in pieces whose size the input chooses. Checks: no crash, no sanitizer report, no hang (every wait is
// bounded); the server ends with data, a clean end, tls::error/tls::truncated or a system error, nothing else.
#include "support/tls_certs.hpp"

#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace {

using namespace std::chrono_literals;
using coring::task;

std::string slurp(const std::filesystem::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

struct world {
    coring::event_loop loop;
    coring::tls::context server_ctx;
    SSL_CTX* client_ctx = nullptr;
    world()
        : server_ctx(coring::tls::context::server_from_memory(slurp(coring_test::tls_certs::get().leaf.cert),
                                                              slurp(coring_test::tls_certs::get().leaf.key))) {
        server_ctx.set_alpn({"http/1.1"});
        client_ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, nullptr);
    }
};

/// The server under test: handshake, then reads until the end or an error.
task<> serve(coring::tls::context ctx, coring::tcp_stream tcp) {
    try {
        auto s = co_await coring::timeout(2s, coring::tls::stream::accept(std::move(ctx), std::move(tcp)));
        s.set_limit(4096);
        for (;;) {
            std::string line = co_await coring::timeout(2s, s.read_until("\n"));
            if (line.empty()) break;
            if (line.size() > 64) co_await coring::timeout(2s, s.write_all(std::string_view(line).substr(0, 64)));
        }
        co_await s.close();
    } catch (const coring::tls::error&) {
    } catch (const std::system_error&) {
    } catch (const coring::timeout_error&) {
    } catch (const std::length_error&) { // limit_overrun_error
    }
}

/// Sends `bytes` in pieces of `step`.
task<> send_pieces(coring::tcp_stream& s, std::string_view bytes, std::size_t step) {
    while (!bytes.empty()) {
        const std::size_t n = std::min(step, bytes.size());
        co_await s.write_all(bytes.substr(0, n));
        bytes.remove_prefix(n);
    }
}

/// Moves the in-memory client's pending ciphertext to the socket.
task<> pump_out(SSL* ssl, coring::tcp_stream& s) {
    BIO* w = SSL_get_wbio(ssl);
    while (const std::size_t pending = BIO_ctrl_pending(w)) {
        std::string out(pending, '\0');
        const int got = BIO_read(w, out.data(), static_cast<int>(pending));
        if (got <= 0) break;
        out.resize(static_cast<std::size_t>(got));
        co_await s.write_all(out);
    }
}

/// A real client handshake over the socket; false when it did not complete.
task<bool> client_handshake(SSL* ssl, coring::tcp_stream& s) {
    char buf[16384];
    for (int round = 0; round < 16; ++round) {
        const int r = SSL_do_handshake(ssl);
        co_await pump_out(ssl, s);
        if (r == 1) co_return true;
        if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ) co_return false;
        const std::size_t n = co_await coring::timeout(2s, s.read(std::span<char>(buf)));
        if (n == 0) co_return false;
        BIO_write(SSL_get_rbio(ssl), buf, static_cast<int>(n));
    }
    co_return false;
}

task<> client(world& w, int fd, const std::uint8_t* data, std::size_t size) {
    coring::tcp_stream s(fd);
    const std::size_t step = 1 + (size > 1 ? data[1] % 251 : 0);
    const bool handshake_first = size > 0 && (data[0] & 1);
    const std::string_view rest(reinterpret_cast<const char*>(data) + std::min<std::size_t>(size, 2),
                                size - std::min<std::size_t>(size, 2));
    SSL* ssl = nullptr;
    try {
        if (handshake_first) {
            ssl = SSL_new(w.client_ctx);
            SSL_set_bio(ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
            SSL_set_connect_state(ssl);
            const bool done = co_await client_handshake(ssl, s);
            if (done) {
                // A valid record or two first (a line, half a line), then the fuzzer's bytes as raw records.
                SSL_write(ssl, "hello\npart", 10);
                co_await pump_out(ssl, s);
            }
        }
        co_await send_pieces(s, rest, step);
        co_await s.shutdown();
        char buf[4096];
        for (;;) {
            const std::size_t n = co_await coring::timeout(3s, s.read(std::span<char>(buf)));
            if (n == 0) break;
        }
    } catch (const std::system_error&) {
    } catch (const coring::timeout_error&) {}
    SSL_free(ssl);
    co_await s.close();
}

task<> one_input(world& w, const std::uint8_t* data, std::size_t size) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) std::abort();
    auto serving = coring::spawn(serve(w.server_ctx, coring::tcp_stream(sv[0])));
    co_await client(w, sv[1], data, size);
    co_await serving;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static world w;
    w.loop.run(one_input(w, data, size));
    return 0;
}
