#pragma once

// Certificates for the TLS tests, made once per process at test time with OpenSSL's C API (ECDSA P-256 keys, so
// handshakes are cheap) in a temporary directory removed at exit: a test CA, a leaf for localhost and 127.0.0.1 signed
// by it, an expired leaf, a leaf for another host, a self-signed leaf, and a client certificate.

#include "support/temp_dir.hpp"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace coring_test {

/// A certificate and its key, as PEM files.
struct cert_files {
    std::filesystem::path cert;
    std::filesystem::path key;
};

/// The test PKI. get() makes it on first use.
struct tls_certs {
private:
    temp_dir scratch_{"coring-tls"}; // removed at exit with the files

public:
    std::filesystem::path dir = scratch_.path();
    std::filesystem::path ca;        // the test CA's certificate (trust this)
    cert_files ca_files;             // the CA's certificate and key
    cert_files leaf;                 // localhost, 127.0.0.1 and ::1, signed by the CA
    cert_files expired;              // like leaf, expired a day ago
    cert_files wrong_host;           // wrong.example and 10.9.8.7, signed by the CA
    cert_files self_signed;          // localhost and 127.0.0.1, signed by itself
    cert_files client;               // a client certificate signed by the CA ("coring test client")
    std::filesystem::path other_key; // a key that matches none of the certificates

    static const tls_certs& get() {
        static const tls_certs certs;
        return certs;
    }

    tls_certs() { make(*this); }
    tls_certs(const tls_certs&) = delete;
    tls_certs& operator=(const tls_certs&) = delete;

private:
    using key_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
    using x509_ptr = std::unique_ptr<X509, decltype(&X509_free)>;

    [[noreturn]] static void fail(const char* what) { throw std::runtime_error(std::string("tls_certs: ") + what); }

    static key_ptr new_key() {
        key_ptr k(EVP_EC_gen("P-256"), &EVP_PKEY_free);
        if (!k) fail("EVP_EC_gen");
        return k;
    }

    static void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
        X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
        if (!ext) fail("X509V3_EXT_conf_nid");
        X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
    }

    /// A certificate for `key` named `cn`, valid from `from_days` to `to_days` (relative to now), signed by
    /// `issuer`/`issuer_key` (itself when null).
    static x509_ptr make_cert(EVP_PKEY* key, const char* cn, const char* san, bool is_ca, long from_days, long to_days,
                              X509* issuer, EVP_PKEY* issuer_key) {
        static long serial = 1;
        x509_ptr c(X509_new(), &X509_free);
        X509_set_version(c.get(), 2);
        ASN1_INTEGER_set(X509_get_serialNumber(c.get()), serial++);
        X509_gmtime_adj(X509_getm_notBefore(c.get()), from_days * 86400);
        X509_gmtime_adj(X509_getm_notAfter(c.get()), to_days * 86400);
        X509_set_pubkey(c.get(), key);
        X509_NAME* name = X509_get_subject_name(c.get());
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("coring tests"), -1,
                                   -1, 0);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
        X509* signer = issuer ? issuer : c.get();
        X509_set_issuer_name(c.get(), X509_get_subject_name(signer));
        if (is_ca) {
            add_ext(c.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
            add_ext(c.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
        } else {
            add_ext(c.get(), signer, NID_basic_constraints, "CA:FALSE");
            add_ext(c.get(), signer, NID_ext_key_usage, "serverAuth,clientAuth");
        }
        add_ext(c.get(), signer, NID_subject_key_identifier, "hash");
        if (san) add_ext(c.get(), signer, NID_subject_alt_name, san);
        if (X509_sign(c.get(), issuer_key ? issuer_key : key, EVP_sha256()) <= 0) fail("X509_sign");
        return c;
    }

    static void write_cert(const std::filesystem::path& p, X509* c) {
        std::FILE* f = std::fopen(p.c_str(), "w");
        if (!f || PEM_write_X509(f, c) != 1) fail("writing a certificate");
        std::fclose(f);
    }
    static void write_key(const std::filesystem::path& p, EVP_PKEY* k) {
        std::FILE* f = std::fopen(p.c_str(), "w");
        if (!f || PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr) != 1) fail("writing a key");
        std::fclose(f);
    }

    static void make(tls_certs& t) {
        const auto file = [&](const char* n) { return t.dir / n; };

        key_ptr ca_key = new_key();
        x509_ptr ca = make_cert(ca_key.get(), "coring test CA", nullptr, true, -1, 30, nullptr, nullptr);
        t.ca = t.ca_files.cert = file("ca.pem");
        t.ca_files.key = file("ca.key");
        write_cert(t.ca, ca.get());
        write_key(t.ca_files.key, ca_key.get());

        const auto leaf = [&](const char* stem, const char* cn, const char* san, long from, long to, bool self) {
            key_ptr k = new_key();
            x509_ptr c = self ? make_cert(k.get(), cn, san, false, from, to, nullptr, nullptr)
                              : make_cert(k.get(), cn, san, false, from, to, ca.get(), ca_key.get());
            cert_files f{file((std::string(stem) + ".pem").c_str()), file((std::string(stem) + ".key").c_str())};
            write_cert(f.cert, c.get());
            write_key(f.key, k.get());
            return f;
        };
        t.leaf = leaf("leaf", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", -1, 30, false);
        t.expired = leaf("expired", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", -30, -1, false);
        t.wrong_host = leaf("wrong-host", "wrong.example", "DNS:wrong.example,IP:10.9.8.7", -1, 30, false);
        t.self_signed = leaf("self-signed", "localhost", "DNS:localhost,IP:127.0.0.1", -1, 30, true);
        t.client = leaf("client", "coring test client", nullptr, -1, 30, false);
        key_ptr other = new_key();
        t.other_key = file("other.key");
        write_key(t.other_key, other.get());
    }
};

} // namespace coring_test
