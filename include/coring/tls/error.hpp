#pragma once

#include <coring/detail/str_cat.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace coring::tls {

/// A TLS failure: a handshake that did not complete (a certificate that does not verify, no common protocol), a
/// record that does not decrypt, a peer's alert. what() names the step, the peer and OpenSSL's reason:
/// "coring: tls handshake with example.com:443: certificate verify failed: unable to get local issuer certificate".
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The peer ended the TCP stream without close_notify. A clean end of a TLS stream is announced; an unannounced one
/// may be an attacker cutting the stream short (the truncation attack), so it is not read as the end of the data.
/// Many HTTPS servers close without it: the HTTP client accepts that once a response's own framing is complete.
class truncated : public error {
public:
    using error::error;
};

namespace detail {

/// OpenSSL's reasons queued on this thread, most recent last, joined by "; " (and the queue emptied). Adds the
/// certificate verification result when the handshake failed on it (only then: a connection that skips verification
/// has a failed result too, which says nothing about a later error).
inline std::string openssl_reason(const SSL* ssl = nullptr) {
    std::string out;
    bool verify_failed = false;
    while (const unsigned long e = ERR_get_error()) {
        if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) verify_failed = true;
        const char* r = ERR_reason_error_string(e);
        char buf[256];
        if (!r) {
            ERR_error_string_n(e, buf, sizeof buf);
            r = buf;
        }
        if (!out.empty()) out += "; ";
        out += r;
    }
    if (ssl && verify_failed) {
        const long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK) {
            if (!out.empty()) out += ": ";
            out += X509_verify_cert_error_string(v);
        }
    }
    return out.empty() ? std::string("unknown error") : out;
}

/// Throws tls::error for a failed OpenSSL call during setup (a context's files, an SSL object).
[[noreturn]] inline void fail_setup(std::string_view what) {
    throw error(coring::detail::str_cat("coring: tls: ", what, ": ", openssl_reason()));
}

} // namespace detail

} // namespace coring::tls
