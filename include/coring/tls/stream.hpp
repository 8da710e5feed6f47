#pragma once

#include <coring/detail/str_cat.hpp>
#include <coring/net/detail/buffered_reads.hpp>
#include <coring/net/stream.hpp>
#include <coring/net/tcp.hpp>
#include <coring/sync/mutex.hpp>
#include <coring/task/shield.hpp>
#include <coring/task/task.hpp>
#include <coring/time/timeout.hpp>
#include <coring/tls/context.hpp>
#include <coring/tls/error.hpp>

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <concepts>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace coring::tls {

/// A TLS connection over a connected coring stream (TCP or Unix-domain), with the reading and writing calls of a
/// plain stream: read, read_exact, read_until, write, write_all, shutdown, close.
///
///     auto ctx = coring::tls::context::client();
///     coring::tls::stream s = co_await coring::tls::stream::connect(ctx, "example.com", 443);
///     co_await s.write_all("GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
///     std::string status = co_await s.read_until("\r\n");
///
/// OpenSSL encrypts and decrypts in memory (two memory BIOs); the ciphertext moves through the socket's own io_uring
/// receives and sends, so no socket call blocks and nothing polls for readiness. One ciphertext write is in flight
/// at a time, in the order OpenSSL made the records: what a read must send (a handshake step, an alert) it sends
/// itself when no write is in progress, and otherwise leaves to that write, which sends everything queued before it
/// lets go; a read never waits behind a write.
///
/// Cancellation and timeouts lose nothing: a read is cancelled only while it waits for ciphertext, before anything
/// is decrypted, and read_exact() and read_until() keep what they had gathered. A write cancelled once it has encrypted
/// its bytes (while it sends them, or waits behind another write) may have sent part of a record, and its records stay
/// queued ahead of anything written later: the stream can no longer write (std::logic_error), since neither the
/// caller nor the peer could tell what was sent. (OpenSSL 3.0 answers a peer's KeyUpdate with this side's next write.)
/// close() sends close_notify (for at most a second) and closes the socket. A peer that ends the TCP stream without
/// close_notify makes reads throw tls::truncated, not return 0.
///
/// Used on the loop's thread; one read and one write may be in flight at once. Movable (its state is on the heap,
/// one allocation per connection).
class stream : public coring::detail::buffered_reads<stream> {
public:
    /// No connection.
    stream() = default;
    /// Moves the connection and its buffered plaintext; the moved-from stream has no connection.
    stream(stream&&) noexcept = default;
    /// Drops this stream's connection, if any (socket closed at once, no close_notify), then takes the other's.
    stream& operator=(stream&&) noexcept = default;

    /// Connects to `host`:`port` and performs the client handshake, sending `host` as SNI and checking the
    /// certificate against it (unless the context skips verification). Throws std::system_error (connect),
    /// tls::error ("coring: tls handshake with example.com:443: certificate verify failed: ..."), cancelled_error.
    [[nodiscard]] static task<stream> connect(context ctx, std::string host, std::uint16_t port) {
        tcp_stream s = co_await tcp_stream::connect(host, port);
        s.set_nodelay(true); // records are written whole; Nagle would hold back a handshake flight
        task<stream> handshaking = connect(std::move(ctx), std::move(s), std::move(host));
        co_return co_await std::move(handshaking);
    }

    /// The client handshake over a connected stream; `server_name` is sent as SNI (unless it is an IP address) and is
    /// what the certificate must name.
    template <std::derived_from<coring::stream> S>
    [[nodiscard]] static task<stream> connect(context ctx, S s, std::string server_name) {
        if (ctx.is_server()) throw std::invalid_argument("coring: tls::stream::connect needs a client context");
        const address peer = s.peer_address();
        const std::string label = coring::detail::str_cat(server_name, ":", std::to_string(peer.port()));
        // The resumption key: the name the certificate is checked against and the port (the socket's path over
        // Unix-domain sockets), so a session is only ever offered to the peer and name that made it.
        std::string key =
            peer.family() == AF_UNIX ? coring::detail::str_cat(server_name, "@", peer.to_string()) : label;
        stream t(std::move(ctx), std::move(s), label);
        t.set_peer_name(server_name);
        t.offer_session(std::move(key));
        co_await t.handshake();
        co_return t;
    }

    /// The server handshake on an accepted stream.
    template <std::derived_from<coring::stream> S>
    [[nodiscard]] static task<stream> accept(context ctx, S s) {
        if (!ctx.is_server()) throw std::invalid_argument("coring: tls::stream::accept needs a server context");
        const std::string label = s.peer_address().to_string();
        stream t(std::move(ctx), std::move(s), label);
        co_await t.handshake();
        co_return t;
    }

    /// Performs the handshake (connect() and accept() already have). Throws tls::error naming the peer and
    /// OpenSSL's reason; a peer that closes during it is a tls::error too. Cancelling it leaves nothing in flight.
    task<> handshake() {
        state& st = get();
        if (st.handshaken) co_return;
        if (st.failed) throw error(st.failure); // OpenSSL's state after a fatal error is not one to resume
        std::string failure;
        for (;;) {
            ERR_clear_error();
            const int r = SSL_do_handshake(st.ssl);
            if (r == 1) break;
            const int e = SSL_get_error(st.ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                failure = coring::detail::str_cat("coring: tls handshake with ", st.peer, ": ",
                                                  detail::openssl_reason(st.ssl));
                break;
            }
            co_await flush(st);
            if (e == SSL_ERROR_WANT_READ) {
                const std::size_t n = co_await receive(st);
                if (n == 0) {
                    failure = coring::detail::str_cat("coring: tls handshake with ", st.peer,
                                                      ": the peer closed the connection");
                    break;
                }
            }
        }
        if (!failure.empty()) {
            // Tell the peer why (OpenSSL queued an alert), briefly and best-effort; the error is what matters.
            bool sent = false;
            try {
                co_await timeout(std::chrono::milliseconds(200), flush(st));
                sent = true;
            } catch (...) {}
            (void)sent;
            st.failed = true;
            st.failure = failure;
            throw error(failure);
        }
        st.handshaken = true;
        keep_tls12_session(st);
        co_await flush(st); // the last flight (and a server's session tickets)
    }

    /// Sends a prefix of `data` (at most 64 KiB, at least a byte unless `data` is empty), encrypted, and returns its
    /// length. Throws std::system_error (send to `<peer>`), tls::error, cancelled_error.
    task<std::size_t> write(std::string_view data) {
        state& st = get();
        if (data.empty()) co_return 0;
        check_writable(st);
        const std::size_t n = std::min<std::size_t>(data.size(), 64 * 1024);
        ERR_clear_error();
        const int r = SSL_write(st.ssl, data.data(), static_cast<int>(n));
        if (r <= 0)
            throw error(
                coring::detail::str_cat("coring: tls write to ", st.peer, ": ", detail::openssl_reason(st.ssl)));
        // The records are made: from here on the bytes count as written whatever happens to this call. A write
        // cancelled now (waiting behind another task's write, or while sending) cannot say how much of them the peer
        // will get, so the stream stops writing rather than let the caller send them twice.
        bool sent = false;
        try {
            co_await flush(st);
            sent = true;
        } catch (...) {
            st.write_broken = true;
            throw;
        }
        (void)sent;
        co_return static_cast<std::size_t>(r);
    }
    /// write() from bytes.
    task<std::size_t> write(std::span<const std::byte> data) {
        return write(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
    }
    /// Sends all of `data`, 64 KiB of plaintext per round of records.
    task<> write_all(std::string_view data) {
        while (!data.empty()) {
            const std::size_t n = co_await write(data);
            data.remove_prefix(n);
        }
    }
    /// write_all() from bytes.
    task<> write_all(std::span<const std::byte> data) {
        return write_all(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
    }

    /// Sends close_notify and half-closes the socket: the peer reads the end of the data; this side can still read.
    task<> shutdown() {
        state& st = get();
        if (st.handshaken && !st.write_broken) {
            queue_close_notify(st);
            co_await flush(st); // also what an earlier, cancelled shutdown() left queued
        }
        co_await st.sock.shutdown();
    }

    /// Sends close_notify (waiting at most a second for the socket to take it) and closes the socket. Reads and
    /// writes other tasks have in flight end with std::system_error (ECANCELED). Closing twice is harmless.
    task<> close() {
        if (!st_) co_return;
        state& st = *st_;
        if (!st.sock.is_open()) co_return;
        if (st.handshaken && !st.write_broken && !st.failed) {
            // Queued now, or by a shutdown() cancelled before its flush sent it (a read sends only its own records).
            queue_close_notify(st);
            try {
                co_await timeout(std::chrono::seconds(1), flush(st));
            } catch (...) {} // a peer that does not read: it is being closed anyway
        }
        co_await shield(st.sock.close());
    }

    /// The application protocol agreed on with ALPN ("http/1.1", "h2"), empty when none.
    [[nodiscard]] std::string_view alpn() const noexcept {
        if (!st_) return {};
        const unsigned char* p = nullptr;
        unsigned n = 0;
        SSL_get0_alpn_selected(st_->ssl, &p, &n);
        return {reinterpret_cast<const char*>(p), n};
    }
    /// "TLSv1.3", "TLSv1.2".
    [[nodiscard]] std::string_view version() const noexcept { return st_ ? SSL_get_version(st_->ssl) : ""; }
    /// Whether the handshake resumed an earlier session (a ticket) instead of a full key exchange. Clients resume
    /// by themselves when their context keeps sessions (context::set_session_cache(), on by default).
    [[nodiscard]] bool session_reused() const noexcept { return st_ && SSL_session_reused(st_->ssl) == 1; }
    /// Whether the peer has sent close_notify (reads return 0 from now on).
    [[nodiscard]] bool peer_closed() const noexcept { return st_ && st_->peer_closed; }
    /// Whether a connection is held and its socket open.
    [[nodiscard]] bool is_open() const noexcept { return st_ && st_->sock.is_open(); }
    /// "host:port" (client) or the peer's address (server), as errors name it.
    [[nodiscard]] const std::string& peer() const noexcept { return get().peer; }
    /// The socket underneath (its address, options; never read or write it directly).
    [[nodiscard]] coring::stream& socket() noexcept { return get().sock; }
    /// Whether decrypted bytes or records are waiting to be read (no system call): an idle connection with any is
    /// not in the state a request/response protocol expects. Records that carry no data count too: the session
    /// tickets a TLS 1.3 server sends after the handshake, until a read takes them, and a key update that arrived
    /// while the connection was idle.
    [[nodiscard]] bool has_pending_input() const noexcept {
        return st_ && (buffered() > 0 || SSL_pending(st_->ssl) > 0 || BIO_ctrl_pending(st_->rbio) > 0 ||
                       st_->sock.buffered() > 0 || st_->sock.receive_ended());
    }
    /// OpenSSL's SSL, for what coring does not wrap (the peer's certificate, the cipher).
    [[nodiscard]] SSL* native_handle() const noexcept { return st_ ? st_->ssl : nullptr; }

private:
    friend class coring::detail::buffered_reads<stream>;

    struct state {
        explicit state(coring::stream s) noexcept : sock(std::move(s)) {}
        std::shared_ptr<context::state> ctx; // keeps the SSL_CTX alive
        coring::stream sock;
        SSL* ssl = nullptr;
        BIO* rbio = nullptr; // ciphertext in: what the socket received (owned by ssl)
        BIO* wbio = nullptr; // ciphertext out: what the socket must send (owned by ssl)
        std::string peer;
        std::string out;               // ciphertext being sent
        std::unique_ptr<char[]> in;    // ciphertext received, up to in_cap bytes at a time
        std::size_t in_cap = 4 * 1024; // in's size: grows to in_size under bulk transfers
        mutex writing;                 // one ciphertext write in flight
        std::string failure;           // what the failed handshake threw, for later calls
        bool handshaken = false;       // the handshake completed
        bool failed = false;           // the handshake failed
        bool peer_closed = false;      // close_notify arrived
        bool sent_close = false;       // close_notify was queued
        bool write_broken = false;     // a write was interrupted mid-record
        context::session_slot session; // clients: where the sessions this connection receives are kept
        ~state() {
            // OpenSSL's SSL_free marks the session of a connection that sent no close_notify unresumable (SSL 3's
            // rule, dropped by TLS 1.1, RFC 4346 7.2.1), and that session is the newest ticket the cache keeps: a
            // client that drops a finished connection (the HTTP client's pool) must not lose it. Fatal errors still
            // mark it (OpenSSL does so when it sends the alert).
            if (ssl && session.cache && handshaken) SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
            SSL_free(ssl); // before `session`, which the SSL's ex_data points to
        }
    };
    static constexpr std::size_t in_size = 16 * 1024 + 512; // a full TLS record and its overhead

    template <class S>
    stream(context ctx, S&& s, std::string peer) : st_(std::make_unique<state>(coring::stream(std::move(s)))) {
        state& st = *st_;
        st.ctx = ctx.st_;
        st.peer = std::move(peer);
        st.in.reset(new char[st.in_cap]);
        st.ssl = SSL_new(ctx.native_handle());
        if (!st.ssl) detail::fail_setup("creating a connection");
        st.rbio = BIO_new(BIO_s_mem());
        st.wbio = BIO_new(BIO_s_mem());
        if (!st.rbio || !st.wbio) {
            BIO_free(st.rbio);
            BIO_free(st.wbio);
            detail::fail_setup("creating memory BIOs");
        }
        // An empty input BIO means "wait for more", not "the end": the socket says when the stream ends.
        BIO_set_mem_eof_return(st.rbio, -1);
        SSL_set_bio(st.ssl, st.rbio, st.wbio);
        if (ctx.is_server()) SSL_set_accept_state(st.ssl);
        else SSL_set_connect_state(st.ssl);
    }

    /// SNI and the name the certificate must carry (a host name, or an IP address checked against the IP SANs).
    void set_peer_name(const std::string& name) {
        state& st = *st_;
        in6_addr a6;
        in_addr a4;
        const bool ip = inet_pton(AF_INET, name.c_str(), &a4) == 1 || inet_pton(AF_INET6, name.c_str(), &a6) == 1;
        if (!ip && !name.empty() && SSL_set_tlsext_host_name(st.ssl, name.c_str()) != 1)
            detail::fail_setup("setting the server name (SNI)");
        if (!st.ctx->verify) return;
        if (ip) {
            if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(st.ssl), name.c_str()) != 1)
                detail::fail_setup("setting the IP address to verify");
        } else if (SSL_set1_host(st.ssl, name.c_str()) != 1) {
            detail::fail_setup("setting the host name to verify");
        }
    }

    /// Client: offers the newest session the context keeps for `key` (taken out of the cache: a TLS 1.3 ticket is
    /// used once) and has the sessions this connection receives kept under `key`.
    void offer_session(std::string key) {
        state& st = *st_;
        if (!st.ctx->sessions.enabled()) return;
        const int index = context::session_slot_index();
        if (index < 0) return;
        st.session.key = std::move(key);
        st.session.cache = &st.ctx->sessions;
        if (SSL_set_ex_data(st.ssl, index, &st.session) != 1) {
            st.session.cache = nullptr;
            return;
        }
        if (SSL_SESSION* s = st.ctx->sessions.take(st.session.key)) {
            SSL_set_session(st.ssl, s); // takes a reference of its own; a session it cannot use means a full handshake
            SSL_SESSION_free(s);
        }
    }
    /// Client, after a handshake that resumed a TLS 1.2 session: the session goes back to the cache (OpenSSL calls
    /// the new-session callback for full handshakes only, and a TLS 1.2 session may be resumed again).
    static void keep_tls12_session(state& st) noexcept {
        if (!st.session.cache || SSL_session_reused(st.ssl) != 1 || SSL_version(st.ssl) >= TLS1_3_VERSION) return;
        SSL_SESSION* s = SSL_get1_session(st.ssl);
        if (!s) return;
        if (SSL_SESSION_is_resumable(s) != 1) {
            SSL_SESSION_free(s);
            return;
        }
        try {
            st.session.cache->put(st.session.key, s);
        } catch (...) {
            SSL_SESSION_free(s);
        }
    }

    state& get() const {
        if (!st_) throw std::logic_error("coring: tls::stream: no connection (moved from, or default-constructed)");
        return *st_;
    }
    void check_writable(const state& st) const {
        if (st.write_broken)
            throw std::logic_error(
                coring::detail::str_cat("coring: tls write to ", st.peer,
                                        ": an earlier write was interrupted mid-record; the stream cannot write"));
        if (!st.handshaken) throw std::logic_error("coring: tls write before the handshake");
        if (st.sent_close)
            throw std::logic_error(coring::detail::str_cat("coring: tls write to ", st.peer, " after shutdown"));
    }

    /// Puts close_notify in OpenSSL's output, once.
    static void queue_close_notify(state& st) {
        if (st.sent_close) return;
        st.sent_close = true;
        ERR_clear_error();
        SSL_shutdown(st.ssl);
    }

    /// Sends whatever OpenSSL has queued, one ciphertext write at a time, in the order it was produced.
    task<> flush(state& st) {
        if (BIO_ctrl_pending(st.wbio) == 0) co_return;
        mutex::guard g = co_await st.writing.lock();
        while (const std::size_t pending = BIO_ctrl_pending(st.wbio)) {
            st.out.resize(pending);
            const int got = BIO_read(st.wbio, st.out.data(), static_cast<int>(pending));
            if (got <= 0) break;
            st.out.resize(static_cast<std::size_t>(got));
            bool ok = false;
            try {
                co_await st.sock.write_all(st.out);
                ok = true;
            } catch (...) {
                st.write_broken = true; // part of a record may be out: nothing after it could be decrypted
                throw;
            }
            (void)ok;
        }
        if (st.out.capacity() > 64 * 1024) std::string().swap(st.out); // bulk writes do not pin their buffer
    }

    /// What a read sends before it waits: the records OpenSSL queued while reading (a KeyUpdate answer, a
    /// no_renegotiation alert), and only those. Never waits for the write lock: a task holding it sends everything
    /// queued before it lets go (flush() loops until OpenSSL's output is empty), so the records go out in order either
    /// way. A read that waited behind a write blocked on a peer that does not read, or that sent that write's bulk,
    /// could deadlock two peers that both write before they read.
    task<> flush_from_read(state& st) {
        // After a write cut short mid-record the peer could not decrypt anything more: nothing goes out.
        if (st.write_broken || BIO_ctrl_pending(st.wbio) == 0) co_return;
        mutex::guard g = st.writing.try_lock();
        if (!g) co_return;
        const std::size_t pending = BIO_ctrl_pending(st.wbio);
        std::string out(pending, '\0');
        const int got = BIO_read(st.wbio, out.data(), static_cast<int>(pending));
        if (got <= 0) co_return;
        out.resize(static_cast<std::size_t>(got));
        bool ok = false;
        try {
            co_await st.sock.write_all(out);
            ok = true;
        } catch (...) {
            st.write_broken = true; // part of a record may be out
            throw;
        }
        (void)ok;
    }

    /// One receive of ciphertext into OpenSSL's input; 0 at the end of the TCP stream. The receive buffer starts at
    /// 4 KiB (requests, responses, handshakes) and grows to a full record's worth the first time a receive fills it
    /// (bulk transfers): an idle connection, whose read waits on this buffer, holds 4 KiB rather than 16.5.
    task<std::size_t> receive(state& st) {
        const std::size_t n = co_await st.sock.read(std::span<char>(st.in.get(), st.in_cap));
        if (n > 0) BIO_write(st.rbio, st.in.get(), static_cast<int>(n));
        if (n == st.in_cap && st.in_cap < in_size) {
            st.in.reset(new char[in_size]);
            st.in_cap = in_size;
        }
        co_return n;
    }

    /// buffered_reads' source: decrypted bytes into `into` (at least one), 0 after the peer's close_notify. Never
    /// suspends once it has decrypted anything, so a cancellation cannot lose plaintext.
    task<std::size_t> fill(std::span<char> into) {
        state& st = get();
        if (!st.handshaken) co_await handshake();
        for (;;) {
            if (st.peer_closed) co_return 0;
            ERR_clear_error();
            const std::size_t queued_before = BIO_ctrl_pending(st.wbio);
            const int r = SSL_read(st.ssl, into.data(), static_cast<int>(std::min<std::size_t>(into.size(), INT_MAX)));
            if (r > 0) co_return static_cast<std::size_t>(r);
            const int e = SSL_get_error(st.ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN) {
                st.peer_closed = true;
                co_return 0;
            }
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                throw error(
                    coring::detail::str_cat("coring: tls read from ", st.peer, ": ", detail::openssl_reason(st.ssl)));
            // Answers the peer may wait for (a key update), before waiting for it. Checked here: a call would cost a
            // coroutine frame per record for nothing, almost always. Only when this SSL_read made all of what is
            // queued: output queued before it is a writer's records (between its SSL_write and its flush), which that
            // writer sends with anything queued behind it; a read that sent them would wait on the socket with them,
            // and two peers that both write before they read would stop, each waiting for the other to read (seen
            // with CPython's blocking echo, 64 MiB each way).
            if (queued_before == 0 && BIO_ctrl_pending(st.wbio) != 0) co_await flush_from_read(st);
            if (e == SSL_ERROR_WANT_READ) {
                const std::size_t n = co_await receive(st);
                if (n == 0)
                    throw truncated(coring::detail::str_cat("coring: tls read from ", st.peer,
                                                            ": the peer closed the connection without close_notify "
                                                            "(the data may have been cut short)"));
            }
        }
    }

    std::unique_ptr<state> st_;
};

} // namespace coring::tls
