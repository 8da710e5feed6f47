// A throwaway certificate authority for the examples that serve HTTPS to themselves (weather, crawler --local --tls):
// made in memory at start-up with OpenSSL's C API, never written to disk. The CA signs one leaf certificate for
// "localhost" and 127.0.0.1; the example's server presents the leaf (tls::context::server_from_memory) and its client
// trusts only this CA (tls::context::load_ca_pem), so the client verifies the server as it would any site on the
// internet, against a CA nobody else has.
//
// Outside a demo, certificates come from files (tls::context::server("cert.pem", "key.pem")) and clients trust the
// system's store (the default of http::client).
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace demo {

/// PEM text: the CA's certificate, and the leaf's certificate and private key.
struct pki {
    std::string ca_cert;
    std::string leaf_cert;
    std::string leaf_key;
};

namespace detail {

using key_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using cert_ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using bio_ptr = std::unique_ptr<BIO, decltype(&BIO_free)>;

[[noreturn]] inline void fail(const char* what) { throw std::runtime_error(std::string("demo pki: ") + what); }

inline key_ptr new_key() { // ECDSA P-256: quick to make and to handshake with
    key_ptr k(EVP_EC_gen("P-256"), &EVP_PKEY_free);
    if (!k) fail("making a key");
    return k;
}

inline void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    if (!ext || X509_add_ext(cert, ext, -1) != 1) fail("adding an extension");
    X509_EXTENSION_free(ext);
}

/// A certificate for `key` named `cn`, valid for a day, signed by `issuer` with `issuer_key` (itself when null).
inline cert_ptr make_cert(EVP_PKEY* key, const char* cn, long serial, bool ca, X509* issuer, EVP_PKEY* issuer_key) {
    cert_ptr c(X509_new(), &X509_free);
    if (!c) fail("X509_new");
    X509_set_version(c.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c.get()), serial);
    X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c.get()), 86400);
    X509_set_pubkey(c.get(), key);
    X509_NAME* name = X509_get_subject_name(c.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509* signer = issuer ? issuer : c.get();
    X509_set_issuer_name(c.get(), X509_get_subject_name(signer));
    if (ca) {
        add_ext(c.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(c.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(c.get(), signer, NID_basic_constraints, "CA:FALSE");
        add_ext(c.get(), signer, NID_ext_key_usage, "serverAuth");
        add_ext(c.get(), signer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
    }
    add_ext(c.get(), signer, NID_subject_key_identifier, "hash");
    if (X509_sign(c.get(), issuer_key ? issuer_key : key, EVP_sha256()) <= 0) fail("signing a certificate");
    return c;
}

inline std::string drain(BIO* b) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    return std::string(data, static_cast<std::size_t>(n));
}

inline std::string cert_pem(X509* c) {
    bio_ptr b(BIO_new(BIO_s_mem()), &BIO_free);
    if (!b || PEM_write_bio_X509(b.get(), c) != 1) fail("writing a certificate");
    return drain(b.get());
}

inline std::string key_pem(EVP_PKEY* k) {
    bio_ptr b(BIO_new(BIO_s_mem()), &BIO_free);
    if (!b || PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr) != 1) fail("writing a key");
    return drain(b.get());
}

} // namespace detail

/// A fresh CA and a leaf for localhost / 127.0.0.1 signed by it (a few milliseconds).
inline pki make_pki() {
    detail::key_ptr ca_key = detail::new_key();
    detail::cert_ptr ca = detail::make_cert(ca_key.get(), "coring demo CA", 1, true, nullptr, nullptr);
    detail::key_ptr leaf_key = detail::new_key();
    detail::cert_ptr leaf = detail::make_cert(leaf_key.get(), "localhost", 2, false, ca.get(), ca_key.get());
    return pki{detail::cert_pem(ca.get()), detail::cert_pem(leaf.get()), detail::key_pem(leaf_key.get())};
}

} // namespace demo
