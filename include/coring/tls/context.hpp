#pragma once

#include <coring/detail/str_cat.hpp>
#include <coring/tls/error.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <initializer_list>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

namespace coring::tls {

class stream;

/// The settings a TLS connection is made with (OpenSSL's SSL_CTX): what to trust, what to present, which
/// application protocols to offer. Make one per kind of connection and share it: copies are cheap and refer to the
/// same settings, and every stream keeps its context alive.
///
///     auto ctx = coring::tls::context::client();                  // system trust store, verification on
///     auto s = co_await coring::tls::stream::connect(ctx, "example.com", 443);
///
///     auto srv = coring::tls::context::server("cert.pem", "key.pem");
///     auto s = co_await coring::tls::stream::accept(srv, co_await listener.accept());
///
/// Clients verify the peer's certificate chain against the system's trust store (or load_ca()'s), check that it
/// names the host connected to, and send that name as SNI: OpenSSL does none of that by default. Both sides speak
/// TLS 1.2 or 1.3, refuse renegotiation, and release their record buffers while a connection is idle.
///
/// Client contexts resume sessions: the tickets a server sends are kept per peer ("host:port", the name the
/// certificate was checked against, so a session is never offered to another name) and the next connection to that
/// peer resumes with the newest one, skipping the key exchange and the certificate check. See set_session_cache().
///
/// Threads: streams on loops of several threads may share a context (and its copies). Its settings (load_ca(),
/// use_certificate(), set_alpn(), insecure_skip_verification(), require_client_certificate(), and what is done
/// through native_handle()) are made before it is used: neither OpenSSL nor coring locks them against the
/// connections that read them. set_session_cache() may be called at any time.
class context {
public:
    /// A client context: the system trust store (OpenSSL's default verify paths), peer verification and host name
    /// checking on, TLS 1.2 at least.
    [[nodiscard]] static context client() {
        context c(TLS_client_method(), false);
        // Parsing the system bundle takes about 20 ms here: it is done once per process and the store shared
        // (read-only) by every client context until one of them adds a CA of its own.
        SSL_CTX_set1_cert_store(c.ctx(), system_trust_store()); // takes a reference
        c.st_->shares_system_store = true;
        SSL_CTX_set_verify(c.ctx(), SSL_VERIFY_PEER, nullptr);
        return c;
    }

    /// A server context presenting the certificate chain in `cert_chain_pem` (leaf first) with its private key.
    /// Session resumption with tickets is on. Throws tls::error naming the file and OpenSSL's reason.
    [[nodiscard]] static context server(const std::filesystem::path& cert_chain_pem,
                                        const std::filesystem::path& key_pem) {
        context c(TLS_server_method(), true);
        c.use_certificate(cert_chain_pem, key_pem);
        return c;
    }
    /// A server context from PEM text held in memory (the chain, leaf first, and the key).
    [[nodiscard]] static context server_from_memory(std::string_view cert_chain_pem, std::string_view key_pem) {
        context c(TLS_server_method(), true);
        c.use_certificate_pem(cert_chain_pem, key_pem);
        return c;
    }

    /// Trusts the CA certificates in `path`, a PEM file or an OpenSSL hashed directory, besides those trusted
    /// already. Throws tls::error naming the path.
    context& load_ca(const std::filesystem::path& path) {
        std::error_code ec;
        const bool dir = std::filesystem::is_directory(path, ec);
        const std::string p = path.string();
        own_cert_store();
        if (SSL_CTX_load_verify_locations(ctx(), dir ? nullptr : p.c_str(), dir ? p.c_str() : nullptr) != 1)
            detail::fail_setup(coring::detail::str_cat("loading CA certificates from ", p));
        if (!st_->server) SSL_CTX_set_verify(ctx(), SSL_VERIFY_PEER, nullptr);
        return *this;
    }

    /// Trusts the CA certificates in `pem` (PEM text in memory, one or more), besides those trusted already. Throws
    /// tls::error when it holds no certificate.
    context& load_ca_pem(std::string_view pem) {
        std::unique_ptr<BIO, decltype(&BIO_free)> in(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                                     &BIO_free);
        if (!in) detail::fail_setup("reading CA certificates from memory");
        own_cert_store();
        X509_STORE* store = SSL_CTX_get_cert_store(ctx());
        int added = 0;
        while (X509* ca = PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr)) {
            const int ok = X509_STORE_add_cert(store, ca); // takes a reference of its own
            X509_free(ca);
            if (ok != 1) detail::fail_setup("adding a CA certificate from memory");
            ++added;
        }
        ERR_clear_error(); // the loop ends on a "no start line" error: the end of the PEM text
        if (added == 0) throw error("coring: tls: loading CA certificates from memory: no PEM certificate");
        if (!st_->server) SSL_CTX_set_verify(ctx(), SSL_VERIFY_PEER, nullptr);
        return *this;
    }

    /// Presents this certificate chain (PEM, leaf first) and key: a server's identity, or a client certificate.
    context& use_certificate(const std::filesystem::path& cert_chain_pem, const std::filesystem::path& key_pem) {
        const std::string cert = cert_chain_pem.string(), key = key_pem.string();
        if (SSL_CTX_use_certificate_chain_file(ctx(), cert.c_str()) != 1)
            detail::fail_setup(coring::detail::str_cat("loading the certificate chain ", cert));
        if (SSL_CTX_use_PrivateKey_file(ctx(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
            // OpenSSL checks the key against the certificate as it loads it: say which two files disagree.
            if (key_mismatch())
                detail::fail_setup(coring::detail::str_cat("the private key ", key, " does not match ", cert));
            detail::fail_setup(coring::detail::str_cat("loading the private key ", key));
        }
        if (SSL_CTX_check_private_key(ctx()) != 1)
            detail::fail_setup(coring::detail::str_cat("the private key ", key, " does not match ", cert));
        return *this;
    }
    /// use_certificate() from PEM text in memory.
    context& use_certificate_pem(std::string_view cert_chain_pem, std::string_view key_pem) {
        std::unique_ptr<BIO, decltype(&BIO_free)> certs(
            BIO_new_mem_buf(cert_chain_pem.data(), static_cast<int>(cert_chain_pem.size())), &BIO_free);
        if (!certs) detail::fail_setup("reading the certificate chain");
        std::unique_ptr<X509, decltype(&X509_free)> leaf(PEM_read_bio_X509_AUX(certs.get(), nullptr, nullptr, nullptr),
                                                         &X509_free);
        if (!leaf || SSL_CTX_use_certificate(ctx(), leaf.get()) != 1)
            detail::fail_setup("reading the certificate chain (no PEM certificate)");
        SSL_CTX_clear_chain_certs(ctx());
        while (X509* extra = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr))
            if (SSL_CTX_add0_chain_cert(ctx(), extra) != 1) { // takes ownership on success only
                X509_free(extra);
                detail::fail_setup("adding a chain certificate");
            }
        ERR_clear_error(); // the loop ends on a "no start line" error: the end of the PEM text
        std::unique_ptr<BIO, decltype(&BIO_free)> keys(
            BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), &BIO_free);
        std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
            keys ? PEM_read_bio_PrivateKey(keys.get(), nullptr, nullptr, nullptr) : nullptr, &EVP_PKEY_free);
        if (!key) detail::fail_setup("reading the private key");
        if (SSL_CTX_use_PrivateKey(ctx(), key.get()) != 1)
            detail::fail_setup(key_mismatch() ? "the private key does not match the certificate"
                                              : "using the private key");
        if (SSL_CTX_check_private_key(ctx()) != 1) detail::fail_setup("the private key does not match the certificate");
        return *this;
    }

    /// The application protocols (ALPN), most preferred first: a client offers them; a server picks the first of its
    /// own list that the client offers (and carries on without ALPN when there is none in common).
    context& set_alpn(std::vector<std::string> protocols) {
        std::string wire;
        for (const std::string& p : protocols) {
            if (p.empty() || p.size() > 255)
                throw std::invalid_argument("coring: tls: an ALPN protocol name must have 1 to 255 bytes");
            wire += static_cast<char>(p.size());
            wire += p;
        }
        st_->alpn_wire = std::move(wire);
        if (st_->server) {
            SSL_CTX_set_alpn_select_cb(ctx(), &select_alpn, st_.get());
        } else if (SSL_CTX_set_alpn_protos(ctx(), reinterpret_cast<const unsigned char*>(st_->alpn_wire.data()),
                                           static_cast<unsigned>(st_->alpn_wire.size())) != 0) {
            detail::fail_setup("setting the ALPN protocols");
        }
        return *this;
    }
    /// set_alpn() from a braced list: `ctx.set_alpn({"h2", "http/1.1"})`.
    context& set_alpn(std::initializer_list<std::string_view> protocols) {
        std::vector<std::string> v;
        for (std::string_view p : protocols) v.emplace_back(p);
        return set_alpn(std::move(v));
    }

    /// Turns certificate verification and the host name check off, for tests against self-signed servers only: the
    /// connection is then encrypted to whoever answers, an attacker included. The name says so on purpose.
    context& insecure_skip_verification() noexcept {
        SSL_CTX_set_verify(ctx(), SSL_VERIFY_NONE, nullptr);
        st_->verify = false;
        return *this;
    }
    /// A server asks clients for a certificate signed by a CA it trusts (load_ca()) and refuses those without one.
    context& require_client_certificate() noexcept {
        SSL_CTX_set_verify(ctx(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        return *this;
    }

    /// Client session resumption, on by default: the sessions (TLS 1.3 tickets, TLS 1.2 sessions) servers give this
    /// context's connections are kept per peer "host:port" (the name sent as SNI and checked in the certificate, with
    /// the port; "name@unix:/path" over Unix-domain sockets), at most 2 per peer, the newest, and at most 1,000 in
    /// all (the least recently stored go first); stream::connect() to the same peer and name offers the newest one.
    /// A TLS 1.3 ticket is used once (RFC 8446 C.4: a ticket reused would link the connections): it leaves the cache
    /// when offered, and the server sends fresh ones on the resumed connection. A TLS 1.2 session goes back after a
    /// resumed handshake. Tickets arrive after the handshake, with the first records read: a connection that reads
    /// nothing leaves none. false turns it off and drops what is kept. Shared by the copies of this context and safe
    /// to use from loops on several threads (a mutex guards it; OpenSSL stores a ticket from inside the SSL_read or
    /// handshake step that received it, on the thread of the stream's loop), and so is this call: it switches the
    /// cache only, never the SSL_CTX's cache mode, which OpenSSL reads without a lock on the threads whose connections
    /// receive sessions (a cache that is off drops what it is handed). No effect on a server context.
    context& set_session_cache(bool on) {
        if (st_->server) return *this;
        st_->sessions.set_enabled(on);
        return *this;
    }
    /// Whether client sessions are kept for resumption (set_session_cache()).
    [[nodiscard]] bool session_cache() const { return !st_->server && st_->sessions.enabled(); }
    /// How many sessions the client session cache holds (all peers).
    [[nodiscard]] std::size_t cached_sessions() const { return st_->sessions.size(); }

    /// Whether set_alpn() gave this context application protocols to offer (a client) or choose from (a server).
    [[nodiscard]] bool has_alpn() const noexcept { return !st_->alpn_wire.empty(); }
    /// Whether peers are verified (clients: certificate and host name).
    [[nodiscard]] bool verifies() const noexcept { return st_->verify; }
    /// Whether this is a server context.
    [[nodiscard]] bool is_server() const noexcept { return st_->server; }
    /// OpenSSL's SSL_CTX, for settings coring does not wrap (cipher lists, curves, session caches).
    [[nodiscard]] SSL_CTX* native_handle() const noexcept { return st_->ctx; }

private:
    friend class stream;

    /// The client sessions kept for resumption, per peer key, newest last; LRU across keys by the time stored.
    class client_sessions {
    public:
        static constexpr std::size_t per_key = 2;
        static constexpr std::size_t total = 1000;

        client_sessions() = default;
        client_sessions(const client_sessions&) = delete;
        client_sessions& operator=(const client_sessions&) = delete;
        ~client_sessions() { clear(); }

        /// Keeps `s` (takes the caller's reference) under `key`, dropping the oldest of that key or of all beyond the
        /// bounds. Throws std::bad_alloc, in which case `s` is the caller's still.
        void put(const std::string& key, SSL_SESSION* s) {
            std::lock_guard lock(mu_);
            if (!enabled_) {
                SSL_SESSION_free(s);
                return;
            }
            auto [it, fresh] = keys_.try_emplace(key);
            try {
                lru_.push_front(entry{&it->first, s});
                it->second.push_back(lru_.begin());
            } catch (...) {
                if (!lru_.empty() && lru_.front().session == s) lru_.pop_front();
                if (fresh) keys_.erase(it);
                throw;
            }
            if (it->second.size() > per_key) drop(it->second.front());
            while (lru_.size() > total) drop(std::prev(lru_.end()));
        }

        /// The newest unexpired session kept for `key`, taken out of the cache (the caller owns the reference), or
        /// null.
        SSL_SESSION* take(const std::string& key) {
            std::lock_guard lock(mu_);
            const auto found = keys_.find(key);
            if (found == keys_.end()) return nullptr;
            const auto now = static_cast<long>(std::time(nullptr));
            SSL_SESSION* got = nullptr;
            while (!got && !found->second.empty()) {
                const auto e = found->second.back();
                SSL_SESSION* s = e->session;
                found->second.pop_back();
                lru_.erase(e);
                if (SSL_SESSION_is_resumable(s) == 1 && SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s) > now)
                    got = s;
                else SSL_SESSION_free(s); // expired, or its connection failed
            }
            if (found->second.empty()) keys_.erase(found);
            return got;
        }

        void set_enabled(bool on) {
            std::lock_guard lock(mu_);
            enabled_ = on;
            if (!on) clear_locked();
        }
        bool enabled() const {
            std::lock_guard lock(mu_);
            return enabled_;
        }
        std::size_t size() const {
            std::lock_guard lock(mu_);
            return lru_.size();
        }
        void clear() {
            std::lock_guard lock(mu_);
            clear_locked();
        }

    private:
        struct entry {
            const std::string* key; // the key in keys_ (node-based: stable)
            SSL_SESSION* session;
        };
        using entry_it = std::list<entry>::iterator;

        void drop(entry_it e) {
            const auto k = keys_.find(*e->key);
            auto& v = k->second;
            v.erase(std::find(v.begin(), v.end(), e));
            SSL_SESSION_free(e->session);
            lru_.erase(e);
            if (v.empty()) keys_.erase(k);
        }
        void clear_locked() noexcept {
            for (entry& e : lru_) SSL_SESSION_free(e.session);
            lru_.clear();
            keys_.clear();
        }

        mutable std::mutex mu_;
        std::list<entry> lru_;                                        // newest first
        std::unordered_map<std::string, std::vector<entry_it>> keys_; // per key, oldest first
        bool enabled_ = true;
    };

    /// What a client connection tells the new-session callback (OpenSSL ex_data of its SSL): where to keep the
    /// sessions it receives and under which key. Owned by the stream, which outlives its SSL.
    struct session_slot {
        client_sessions* cache = nullptr;
        std::string key;
    };
    static int session_slot_index() {
        static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
        return index;
    }

    /// OpenSSL's new-session callback (SSL_CTX_sess_set_new_cb), called inside the handshake step or SSL_read that
    /// received a session: 1 keeps the reference it hands over.
    static int on_new_session(SSL* ssl, SSL_SESSION* s) noexcept {
        const int index = session_slot_index();
        auto* slot = index < 0 ? nullptr : static_cast<session_slot*>(SSL_get_ex_data(ssl, index));
        if (!slot || !slot->cache || SSL_SESSION_is_resumable(s) != 1) return 0;
        try {
            slot->cache->put(slot->key, s);
        } catch (...) {
            return 0; // not kept; OpenSSL drops its reference
        }
        return 1;
    }

    struct state {
        SSL_CTX* ctx = nullptr;
        std::string alpn_wire; // length-prefixed names, the format of the ALPN extension
        bool server = false;
        bool verify = true;
        bool shares_system_store = false; // the store is system_trust_store(): copy it before adding to it
        client_sessions sessions;         // clients: sessions to resume, per peer
        ~state() { SSL_CTX_free(ctx); }
    };

    context(const SSL_METHOD* method, bool server) : st_(std::make_shared<state>()) {
        st_->server = server;
        st_->ctx = SSL_CTX_new(method);
        if (!st_->ctx) detail::fail_setup("creating a context");
        SSL_CTX_set_min_proto_version(ctx(), TLS1_2_VERSION);
        // Renegotiation is a known source of attacks and of deadlocks in event loops; TLS 1.3 has none.
        SSL_CTX_set_options(ctx(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
        // An idle connection gives its 34 KiB of record buffers back (they come back with the next record).
        SSL_CTX_set_mode(ctx(), SSL_MODE_RELEASE_BUFFERS);
        if (server) {
            // Resumption: stateless tickets (OpenSSL's default) and the session cache, under one id context.
            static constexpr unsigned char id[] = "coring";
            SSL_CTX_set_session_id_context(ctx(), id, sizeof id - 1);
        } else {
            // Resumption: the sessions servers send are kept in state::sessions, not in OpenSSL's own cache (which a
            // client never looks up by itself), and offered by stream::connect().
            SSL_CTX_set_session_cache_mode(ctx(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
            SSL_CTX_sess_set_new_cb(ctx(), &on_new_session);
        }
    }

    SSL_CTX* ctx() const noexcept { return st_->ctx; }

    /// The system trust store (OpenSSL's default verify paths: the bundle file and the hashed directory, or
    /// SSL_CERT_FILE and SSL_CERT_DIR), loaded at the first call and kept for the life of the process. OpenSSL locks
    /// a store's lookups, so client contexts on several threads share it.
    static X509_STORE* system_trust_store() {
        // A throw leaves the static uninitialised, so a later call tries again (the files may appear).
        static X509_STORE* const store = [] {
            X509_STORE* s = X509_STORE_new();
            if (!s) detail::fail_setup("loading the system trust store");
            if (X509_STORE_set_default_paths(s) != 1) {
                X509_STORE_free(s);
                detail::fail_setup("loading the system trust store");
            }
            return s;
        }();
        return store;
    }

    /// Before load_ca() adds to a client's store: a store of this context's own holding what the shared system
    /// store holds (the certificates already parsed, by reference, and a lookup in the same hashed directory), so
    /// the CA added is trusted here only.
    void own_cert_store() {
        if (!st_->shares_system_store) return;
        X509_STORE* copy = X509_STORE_new();
        if (!copy) detail::fail_setup("copying the system trust store");
        std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> guard(copy, &X509_STORE_free);
        X509_STORE* shared = system_trust_store();
        if (X509_STORE_lock(shared) != 1) detail::fail_setup("copying the system trust store");
        bool ok = true;
        STACK_OF(X509_OBJECT)* objects = X509_STORE_get0_objects(shared);
        for (int i = 0; ok && i < sk_X509_OBJECT_num(objects); ++i) {
            X509_OBJECT* o = sk_X509_OBJECT_value(objects, i);
            if (X509_OBJECT_get_type(o) == X509_LU_X509) ok = X509_STORE_add_cert(copy, X509_OBJECT_get0_X509(o)) == 1;
            else if (X509_OBJECT_get_type(o) == X509_LU_CRL)
                ok = X509_STORE_add_crl(copy, X509_OBJECT_get0_X509_CRL(o)) == 1;
        }
        X509_STORE_unlock(shared);
        X509_LOOKUP* dir = ok ? X509_STORE_add_lookup(copy, X509_LOOKUP_hash_dir()) : nullptr;
        if (!dir || X509_LOOKUP_add_dir(dir, nullptr, X509_FILETYPE_DEFAULT) != 1)
            detail::fail_setup("copying the system trust store");
        ERR_clear_error(); // a missing default directory is not an error (X509_STORE_set_default_paths agrees)
        SSL_CTX_set_cert_store(ctx(), guard.release()); // takes ownership, frees the reference to the shared one
        st_->shares_system_store = false;
    }

    /// Whether the last OpenSSL error is a key that does not match the certificate (left queued for the message).
    static bool key_mismatch() noexcept {
        const unsigned long e = ERR_peek_last_error();
        return ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
    }

    static int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                           unsigned inlen, void* arg) noexcept {
        const auto* st = static_cast<const state*>(arg);
        unsigned char* chosen = nullptr;
        // Server preference: the first of ours that the client offers.
        if (SSL_select_next_proto(&chosen, outlen, reinterpret_cast<const unsigned char*>(st->alpn_wire.data()),
                                  static_cast<unsigned>(st->alpn_wire.size()), in, inlen) != OPENSSL_NPN_NEGOTIATED)
            return SSL_TLSEXT_ERR_NOACK;
        *out = chosen;
        return SSL_TLSEXT_ERR_OK;
    }

    std::shared_ptr<state> st_;
};

} // namespace coring::tls
