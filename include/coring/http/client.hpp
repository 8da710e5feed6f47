#pragma once

#include <coring/detail/inner_awaiter.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/http/detail/parser.hpp>
#include <coring/http/json.hpp>
#include <coring/http/message.hpp>
#include <coring/http/url.hpp>
#include <coring/http/websocket.hpp>
#include <coring/net/tcp.hpp>
#include <coring/sync/semaphore.hpp>
#include <coring/task/task.hpp>
#include <coring/time/timeout.hpp>
#if CORING_HTTP_TLS
#include <coring/tls/context.hpp>
#include <coring/tls/error.hpp>
#include <coring/tls/stream.hpp>
#endif

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace coring::http {

// ---- errors ---------------------------------------------------------------------------------------------------------

/// A response that is not acceptable HTTP/1.1 (llhttp refused it, it broke off, or it exceeds a client limit).
/// what() names the method, the URL and the reason: "coring: http: GET http://h/x: malformed response (...)".
class protocol_error : public std::runtime_error {
public:
    /// An error about the response to `method` `url`.
    protocol_error(std::string_view method, std::string url, std::string reason)
        : std::runtime_error(coring::detail::str_cat("coring: http: ", method, " ", url, ": ", reason)),
          url_(std::move(url)),
          reason_(std::move(reason)) {}
    /// The URL whose response failed.
    [[nodiscard]] const std::string& url() const noexcept { return url_; }
    /// Why, without the URL (llhttp's error name and reason for a parse error).
    [[nodiscard]] const std::string& reason() const noexcept { return reason_; }

private:
    std::string url_;
    std::string reason_;
};

/// A request that did not finish within its timeout (or could not connect within the connect timeout). Derives from
/// coring::timeout_error, so code that catches that catches this too; what() names the URL. Not called
/// http::timeout_error on purpose: inside namespace coring::http that name would hide coring::timeout_error from every
/// unqualified `catch (const timeout_error&)` declared after it (server.hpp has two).
class client_timeout_error : public coring::timeout_error {
public:
    /// A timeout of the request to `url`, described by `what`.
    client_timeout_error(std::string url, std::string what) : url_(std::move(url)), what_(std::move(what)) {}
    [[nodiscard]] const char* what() const noexcept override { return what_.c_str(); }
    /// The URL being requested when time ran out.
    [[nodiscard]] const std::string& url() const noexcept { return url_; }

private:
    std::string url_;
    std::string what_;
};

/// More redirects than client_options::max_redirects allows (aiohttp's TooManyRedirects).
class too_many_redirects : public std::runtime_error {
public:
    /// `url` is the URL that answered with the redirect that was one too many.
    too_many_redirects(std::string url, const std::string& what) : std::runtime_error(what), url_(std::move(url)) {}
    /// The URL that answered with one redirect too many.
    [[nodiscard]] const std::string& url() const noexcept { return url_; }

private:
    std::string url_;
};

// ---- options and results --------------------------------------------------------------------------------------------

/// The default headers of a client: User-Agent: coring.
inline http::headers default_client_headers() {
    http::headers h;
    h.add("User-Agent", "coring");
    return h;
}

/// A client's timeouts, limits and pool sizes (aiohttp's ClientSession and TCPConnector arguments).
struct client_options {
    /// Per request, from the call to the last body byte, redirects and connecting included; zero: no limit.
    std::chrono::milliseconds timeout{30'000};
    /// Per connection attempt (name resolution and TCP connect), within `timeout`; zero: only `timeout` applies.
    std::chrono::milliseconds connect_timeout{10'000};
    /// Redirects followed per request; one more is a too_many_redirects.
    std::size_t max_redirects = 10;
    /// Whether 301, 302, 303, 307 and 308 responses with a Location are followed (else they are returned).
    bool follow_redirects = true;
    /// Connections in use at once per host:port; further requests wait for one (zero: no limit).
    std::size_t max_connections_per_host = 100;
    /// Idle keep-alive connections kept per host:port for reuse (zero: none; every request gets a new connection).
    std::size_t max_idle_per_host = 16;
    /// An idle connection older than this is closed instead of reused (servers drop idle ones too); zero: no limit.
    std::chrono::milliseconds idle_lifetime{15'000};
    /// Names and values of a response's header fields together.
    std::size_t max_header_bytes = 64 * 1024;
    /// Header fields of a response.
    std::size_t max_headers = 100;
    /// A body read whole (request(), get(), ..., client_stream::read_all()); a larger one is a protocol_error.
    /// client_stream::read() has no limit.
    std::size_t max_body = 64 * 1024 * 1024;
    /// Sent with every request unless the request has a field of the same name; but never Host, Content-Length or
    /// Transfer-Encoding (the client writes those), never credentials (Authorization, Proxy-Authorization, Cookie,
    /// Cookie2) after a redirect to another origin, and never body fields (Content-Type, ...) after a redirect that
    /// turned the request into a GET without body. A "Connection: close" here keeps connections out of the pool.
    http::headers default_headers = default_client_headers();
#if CORING_HTTP_TLS
    /// The TLS settings of https:// connections: whom to trust, whether to verify. Empty (the default): a context
    /// shared by every client of the process, tls::context::client() (the system trust store, certificate and host
    /// name verification on), made at the first https:// request (loading the system store takes tens of
    /// milliseconds, which a client that never speaks HTTPS does not pay). For a private CA:
    ///
    ///     coring::http::client_options o;
    ///     o.tls = coring::tls::context::client();
    ///     o.tls->load_ca("ca.pem");
    ///
    /// and, for tests against a self-signed server only, `o.tls->insecure_skip_verification()`. The client offers
    /// ALPN "http/1.1"; on a context given here without ALPN protocols of its own, it sets that on the context (which
    /// its copies share). Only with coring::tls (CORING_HTTP_TLS).
    std::optional<coring::tls::context> tls{};
#endif
};

/// Per-request overrides of client_options.
struct request_options {
    std::optional<std::chrono::milliseconds> timeout{}; ///< instead of client_options::timeout
    std::optional<bool> follow_redirects{};             ///< instead of client_options::follow_redirects
    std::optional<std::size_t> max_redirects{};         ///< instead of client_options::max_redirects
};

/// A complete response (aiohttp's ClientResponse after read()).
struct client_response {
    int status = 0;        ///< status code of the final response (after redirects)
    int version_minor = 1; ///< HTTP/1.<version_minor>
    http::headers headers; ///< in arrival order
    std::string body;      ///< the whole body (empty for HEAD, 204, 304)
    http::url url;         ///< the URL that answered: the last one after redirects
    /// Trailer fields after a chunked body, kept apart from `headers`: a trailer can claim anything a header can
    /// (RFC 9110 section 6.5), so it is never merged.
    http::headers trailers;

    /// The standard reason phrase of the status ("Not Found"; llhttp does not hand over the one received).
    [[nodiscard]] std::string_view reason() const noexcept { return reason_phrase(status); }
    /// Whether the status is below 400 (aiohttp's ok).
    [[nodiscard]] bool ok() const noexcept { return status > 0 && status < 400; }
#if CORING_HTTP_HAS_JSON
    /// The body parsed as JSON (aiohttp's `await response.json()`), whatever the status and the Content-Type (unlike
    /// aiohttp, which raises ContentTypeError unless it is application/json: a body that parses is taken). Throws
    /// json_error naming the URL, status and Content-Type, with nlohmann/json's reason and the byte position, when it
    /// is not valid JSON (an empty body included). Only with nlohmann/json (see <coring/http/json.hpp>);
    /// `json<nlohmann::ordered_json>()` keeps the order of object keys.
    template <class Json = nlohmann::json>
        requires detail::nlohmann_json_type<Json>
    [[nodiscard]] Json json() const {
        return detail::json_parse_response<Json>(body, url, status, headers.get_or("Content-Type", ""));
    }
#endif
};

namespace detail {

using client_clock = coring::detail::clock; ///< the loop's timer clock (steady_clock)

/// The deadline `d` from now; zero or less means none.
inline client_clock::time_point client_deadline(std::chrono::milliseconds d) noexcept {
    if (d <= std::chrono::milliseconds::zero()) return client_clock::time_point::max();
    return coring::detail::deadline_after(std::chrono::duration_cast<client_clock::duration>(d));
}

// ---- the transport (TLS seam) ---------------------------------------------------------------------------------------

#if CORING_HTTP_TLS
using client_tls_context = coring::tls::context; ///< what an https:// connection is made with
#else
struct client_tls_context {}; ///< no TLS in this build: https:// URLs are refused before a connection is opened
#endif

/// The awaitable of one of two kinds of I/O, chosen at run time: a plain socket operation (awaited directly, no
/// coroutine frame) or a TLS one (a task). Lets client_connection branch on its scheme without turning the plain
/// path into a coroutine per read. Its result is the plain one's, or void when the two disagree (write_all()).
template <class Plain, class Secure>
class [[nodiscard]] client_either {
    using plain_awaiter = coring::detail::inner_awaiter<Plain>;
    using secure_awaiter = coring::detail::inner_awaiter<Secure>;
    using plain_result = typename plain_awaiter::result_type;
    using secure_result = typename secure_awaiter::result_type;
    using result = std::conditional_t<std::is_same_v<plain_result, secure_result>, plain_result, void>;

public:
    /// The plain operation.
    explicit client_either(Plain&& p) : plain_(std::in_place, std::move(p)) {}
    /// The TLS operation.
    explicit client_either(Secure&& s) : secure_(std::in_place, std::move(s)) {}

    bool await_ready() { return plain_ ? plain_->get().await_ready() : secure_->get().await_ready(); }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) {
        return plain_ ? forward(plain_->get(), h) : forward(secure_->get(), h);
    }
    result await_resume() {
        if constexpr (std::is_void_v<result>) {
            if (plain_) plain_->get().await_resume();
            else secure_->get().await_resume();
        } else {
            if (plain_) return plain_->get().await_resume();
            return secure_->get().await_resume();
        }
    }

private:
    /// The inner awaiter's await_suspend, whatever it returns, as a handle to resume (symmetric transfer).
    template <class A, class P>
    static std::coroutine_handle<> forward(A& a, std::coroutine_handle<P> h) {
        using R = decltype(a.await_suspend(h));
        if constexpr (std::is_void_v<R>) {
            a.await_suspend(h);
            return std::noop_coroutine();
        } else if constexpr (std::is_same_v<R, bool>) {
            if (a.await_suspend(h)) return std::noop_coroutine();
            return h;
        } else {
            return a.await_suspend(h);
        }
    }

    std::optional<plain_awaiter> plain_;   // engaged for a plain connection
    std::optional<secure_awaiter> secure_; // engaged for a TLS connection
};

/// One connection of a client to a server, and the only place where the client touches the network: a tcp_stream
/// for http://, a tls::stream over one for https:// (chosen by the URL's scheme in open()). The request logic
/// (client_exchange and below, the pool, redirects) only calls these members, whatever the scheme.
///
/// The plain path stays as it was: each I/O call returns the socket's own awaitable (no coroutine frame per read);
/// only TLS calls are tasks. A TLS connection is verified in open() (SNI and the certificate's name from the URL's
/// host, ALPN "http/1.1"), sends close_notify in close(), and is usable() or drained() when OpenSSL holds nothing
/// unread either.
///
/// TLS truncation: a server that ends the TCP stream without close_notify makes a TLS read throw tls::truncated. The
/// client never reads past a response whose own framing is complete (Content-Length reached, the last chunk), so that
/// case cannot arise for those; for a response delimited by the end of the connection (no length, not chunked), the
/// end is only trusted with close_notify: without it the request fails with tls::truncated naming the URL, since an
/// attacker could have cut the body short. read_some() reports such an end as 0 and records it (cut_short()), so
/// that a reused connection that the server closed is handled by the retry rule as on plain HTTP.
class client_connection {
public:
    /// The input buffer's size: one recv's worth (and a TLS record's plaintext); the response parser takes it whole.
    static constexpr std::size_t buffer_size = 16 * 1024;

    /// Not connected yet (open() connects); the input buffer is allocated once here, for the connection's life.
    client_connection() : in_(new char[buffer_size]) {}

    /// Connects to `u`'s host and port (resolving the name), with `deadline` for the whole attempt; for https://, the
    /// TLS handshake with `tls` as well (null for http://).
    static task<std::unique_ptr<client_connection>> open(const url& u, client_clock::time_point deadline,
                                                         [[maybe_unused]] const client_tls_context* tls) {
        auto c = std::make_unique<client_connection>();
        task<tcp_stream> connecting = tcp_stream::connect(u.host, u.port);
        tcp_stream s = co_await timeout_at(deadline, std::move(connecting));
        s.set_nodelay(true); // a request is written whole; Nagle would hold back a body sent after its head
        c->fd_ = s.native_handle();
#if CORING_HTTP_TLS
        if (tls) {
            task<coring::tls::stream> handshaking = coring::tls::stream::connect(*tls, std::move(s), u.host);
            c->t_ = co_await timeout_at(deadline, std::move(handshaking));
            c->secure_ = true;
            co_return c;
        }
#endif
        c->s_ = std::move(s);
        co_return c;
    }

    /// Reads what is available into `buf` (0 at the end of the stream, or a TLS end without close_notify: see
    /// cut_short()), by `deadline`.
    [[nodiscard]] auto read_some(std::span<char> buf, client_clock::time_point deadline) {
#if CORING_HTTP_TLS
        using either = client_either<decltype(timeout_at(deadline, s_.read(buf))),
                                     decltype(timeout_at(deadline, read_secure(buf)))>;
        if (secure_) return either(timeout_at(deadline, read_secure(buf)));
        return either(timeout_at(deadline, s_.read(buf)));
#else
        return timeout_at(deadline, s_.read(buf));
#endif
    }
    /// Sends a prefix of `data` (at least a byte) by `deadline`; returns how much.
    [[nodiscard]] auto write_some(std::string_view data, client_clock::time_point deadline) {
#if CORING_HTTP_TLS
        using either = client_either<decltype(timeout_at(deadline, s_.write(data))),
                                     decltype(timeout_at(deadline, t_.write(data)))>;
        if (secure_) return either(timeout_at(deadline, t_.write(data)));
        return either(timeout_at(deadline, s_.write(data)));
#else
        return timeout_at(deadline, s_.write(data));
#endif
    }
    /// Sends all of `data` by `deadline`.
    [[nodiscard]] auto write_all(std::string_view data, client_clock::time_point deadline) {
#if CORING_HTTP_TLS
        using either = client_either<decltype(timeout_at(deadline, s_.write_all(data))),
                                     decltype(timeout_at(deadline, t_.write_all(data)))>;
        if (secure_) return either(timeout_at(deadline, t_.write_all(data)));
        return either(timeout_at(deadline, s_.write_all(data)));
#else
        return timeout_at(deadline, s_.write_all(data));
#endif
    }
    /// Closes the connection (through io_uring; the destructor closes synchronously instead); a TLS one sends
    /// close_notify first (for at most a second).
    [[nodiscard]] auto close() {
#if CORING_HTTP_TLS
        using either = client_either<decltype(s_.close()), decltype(t_.close())>;
        if (secure_) return either(t_.close());
        return either(s_.close());
#else
        return s_.close();
#endif
    }

    /// Whether the stream holds nothing the client has not read: no byte it took in ahead of a read and no end or
    /// error it saw (for TLS: no decrypted byte, record or ciphertext waiting in OpenSSL either). A multishot receive
    /// (loop_options::multishot_streams) stays armed on an idle connection and moves whatever arrives into the
    /// stream, where a peek at the socket no longer sees it. No system call.
    [[nodiscard]] bool drained() const noexcept {
#if CORING_HTTP_TLS
        if (secure_) return !t_.has_pending_input() && !cut_short_;
#endif
        return s_.buffered() == 0 && !s_.receive_ended();
    }

    /// Whether an idle connection can carry a request: the server has neither closed it nor sent anything
    /// unsolicited (a 408 before closing, a close_notify), whether that is still in the socket or already in the
    /// stream. One non-blocking peek: it catches the common case of a server that timed the connection out long ago,
    /// so that it is not even tried; the race with a close in flight is left to the retry rule.
    [[nodiscard]] bool usable() const noexcept {
        if (!drained()) return false;
        char b;
        for (;;) {
            const ssize_t r = ::recv(fd_, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (r < 0 && errno == EINTR) continue;
            return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        }
    }

    /// Whether the connection is TLS (https://).
    [[nodiscard]] bool secure() const noexcept { return secure_; }
    /// The tls::truncated of a TLS read that met the end of the TCP stream without close_notify (read_some() returned
    /// 0 for it), or null.
    [[nodiscard]] std::exception_ptr cut_short() const noexcept { return cut_short_; }

    /// The input buffer; unparsed bytes are [begin, end).
    [[nodiscard]] char* buffer() noexcept { return in_.get(); }
    std::size_t begin = 0;                 ///< first unparsed byte in buffer()
    std::size_t end = 0;                   ///< one past the last received byte in buffer()
    std::string out;                       ///< the request head being sent (reused: its capacity stays)
    client_clock::time_point idle_since{}; ///< when it went back to the pool
    std::size_t responses = 0;             ///< complete responses it carried (more than 0: a reused connection)

private:
#if CORING_HTTP_TLS
    /// A TLS read; an end without close_notify reads as 0 and is kept in cut_short_ for the caller to judge.
    task<std::size_t> read_secure(std::span<char> buf) {
        std::size_t n = 0;
        try {
            n = co_await t_.read(buf);
        } catch (const coring::tls::truncated&) {
            cut_short_ = std::current_exception();
        }
        co_return n;
    }

    coring::tls::stream t_; // the connection of an https:// URL (s_ is then empty)
#endif
    tcp_stream s_;                 // the connection of an http:// URL
    std::unique_ptr<char[]> in_;   // received bytes; allocated once per connection, not per request
    std::exception_ptr cut_short_; // a TLS end without close_notify that read_some() reported as 0
    int fd_ = -1;                  // the socket, for usable()'s peek
    bool secure_ = false;          // t_ is the connection
};

// ---- the pool -------------------------------------------------------------------------------------------------------

/// The pool's key for `u`: its origin, "http://host:port" or "https://host:port". The scheme is part of it so that a
/// connection of one scheme is never handed to a request of the other (http://h:443 and https://h).
inline std::string client_pool_key(const url& u) { return coring::detail::str_cat(u.scheme, "://", u.endpoint()); }

/// The connections of one origin (scheme, host and port).
struct client_host {
    std::vector<std::unique_ptr<client_connection>> idle; ///< oldest first; reused newest first
    std::unique_ptr<semaphore> limit;                     ///< permits for connections in use; null: no limit
};

/// A client's shared state. Requests and streams hold it too, so a client may be destroyed while they run (they
/// then close their connections instead of returning them). Loop thread only.
struct client_pool {
    /// The pool of a client with these options.
    explicit client_pool(client_options o)
        : opts(std::move(o)), limits{0, opts.max_header_bytes, opts.max_headers, opts.max_body} {}

    client_options opts;                                ///< the client's options, read by its requests
    parse_limits limits;                                ///< for llhttp: header size and count
    std::unordered_map<std::string, client_host> hosts; ///< by client_pool_key(); never erased: pointers stay valid
    std::size_t opened = 0;                             ///< connections opened so far (client::connections_opened)
    bool closed = false;                                ///< close() or the destructor ran: nothing is pooled

    /// The connections of `key` (client_pool_key()), made on first use.
    client_host& host(const std::string& key) {
        auto [it, added] = hosts.try_emplace(key);
        if (added && opts.max_connections_per_host > 0)
            it->second.limit = std::make_unique<semaphore>(static_cast<std::ptrdiff_t>(opts.max_connections_per_host));
        return it->second;
    }

    /// Whether an idle connection has outlived client_options::idle_lifetime.
    [[nodiscard]] bool expired(const client_connection& c, client_clock::time_point now) const noexcept {
        return opts.idle_lifetime > std::chrono::milliseconds::zero() && now - c.idle_since >= opts.idle_lifetime;
    }

    /// The newest idle connection that is still usable, or null; the others it passes are closed.
    std::unique_ptr<client_connection> take_idle(client_host& h) {
        const auto now = client_clock::now();
        while (!h.idle.empty()) {
            std::unique_ptr<client_connection> c = std::move(h.idle.back());
            h.idle.pop_back();
            if (!expired(*c, now) && c->usable()) return c;
        }
        return nullptr;
    }

    /// Keeps a connection whose response was read completely for the next request (or closes it).
    void put_back(client_host& h, std::unique_ptr<client_connection> c) {
        if (closed || opts.max_idle_per_host == 0) return;
        const auto now = client_clock::now();
        std::size_t stale = 0;
        while (stale < h.idle.size() && expired(*h.idle[stale], now)) ++stale;
        if (h.idle.size() - stale >= opts.max_idle_per_host) ++stale; // full: the oldest makes room
        h.idle.erase(h.idle.begin(), h.idle.begin() + static_cast<std::ptrdiff_t>(std::min(stale, h.idle.size())));
        c->idle_since = now;
        h.idle.push_back(std::move(c));
    }

#if CORING_HTTP_TLS
    /// The context of https:// connections: client_options::tls, or the process's default when it is empty; ALPN
    /// "http/1.1" offered unless the context offers protocols of its own.
    const coring::tls::context& tls_context() {
        if (!opts.tls) opts.tls = default_tls();
        else if (!tls_checked && !opts.tls->has_alpn()) opts.tls->set_alpn({"http/1.1"});
        tls_checked = true;
        return *opts.tls;
    }
    /// The default client context, made once per process (loading the system trust store is slow) and shared.
    static const coring::tls::context& default_tls() {
        static const coring::tls::context ctx = [] {
            coring::tls::context c = coring::tls::context::client();
            c.set_alpn({"http/1.1"});
            return c;
        }();
        return ctx;
    }
    bool tls_checked = false; ///< tls_context() has looked at client_options::tls's ALPN
#endif

    /// Closes every idle connection (synchronously) and refuses new requests.
    void shut() noexcept {
        closed = true;
        for (auto& [key, h] : hosts) h.idle.clear();
    }
};

/// A permit of a host's connection limit, given back when destroyed.
class client_permit {
public:
    /// No permit.
    client_permit() noexcept = default;
    /// Owns a permit already taken from `s`.
    explicit client_permit(semaphore* s) noexcept : s_(s) {}
    /// Takes over the permit.
    client_permit(client_permit&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    /// Gives back the permit held, then takes over `o`'s.
    client_permit& operator=(client_permit&& o) noexcept {
        if (this != &o) {
            reset();
            s_ = std::exchange(o.s_, nullptr);
        }
        return *this;
    }
    ~client_permit() { reset(); }
    /// Whether a permit is held.
    [[nodiscard]] bool held() const noexcept { return s_ != nullptr; }
    /// Gives the permit back now (a waiting request gets it).
    void reset() noexcept {
        if (s_) std::exchange(s_, nullptr)->release();
    }

private:
    semaphore* s_ = nullptr;
};

// ---- one request ----------------------------------------------------------------------------------------------------

/// What is sent for the current hop of a request (redirects change it).
struct client_request_spec {
    std::string method;        ///< uppercase
    std::string body;          ///< sent with Content-Length
    http::headers headers;     ///< the caller's, validated
    bool cross_origin = false; ///< a redirect left the first origin: no credentials from the defaults either
    bool body_dropped = false; ///< a redirect turned it into a GET: no body fields from the defaults either
};

/// Whether two URLs have one origin (RFC 6454: scheme, host and port). url::parse lowercases the scheme and the host
/// and fills in the scheme's default port, so "http://A" and "http://a:80" are one origin.
inline bool client_same_origin(const url& a, const url& b) noexcept {
    return a.scheme == b.scheme && a.host == b.host && a.port == b.port;
}

/// Fields that hold credentials for the origin they were given for (RFC 9110 15.4: not to be sent on to another
/// after a redirect). Proxy-Authorization too: coring has no proxy, so it could only be meant for the first host.
inline constexpr std::string_view client_credential_fields[] = {"Authorization", "Proxy-Authorization", "Cookie",
                                                                "Cookie2"};

/// Fields that describe a request's body (Fetch's request-body-header names): wrong once a redirect drops the body.
inline constexpr std::string_view client_body_fields[] = {"Content-Type", "Content-Encoding", "Content-Language",
                                                          "Content-Location"};

/// Whether `name` frames a message's body (Content-Length, Transfer-Encoding): the client writes those itself, from
/// the body it sends; one from the caller or the defaults would desynchronise the connection.
inline bool client_framing_field(std::string_view name) noexcept {
    return iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding");
}

/// Whether `name` is one of `names`, in any case.
template <std::size_t N>
bool client_field_in(std::string_view name, const std::string_view (&names)[N]) noexcept {
    for (std::string_view n : names)
        if (iequals(name, n)) return true;
    return false;
}

/// The state of one request from its first byte to its last: its connection while it has one, the response parser
/// and the body bytes parsed but not handed out yet. Heap-allocated, so that client_stream can move.
struct client_exchange {
    std::shared_ptr<client_pool> pool;       // first: outlives the permit and the connection
    client_host* host = nullptr;             // whose permit is held
    client_permit permit;                    // a place under host->limit while a connection is used
    std::unique_ptr<client_connection> conn; // destroyed (closed) before the permit goes back

    std::string method;                                                  // of the current hop, for messages
    http::url first;                                                     // as requested
    http::url current;                                                   // the hop in progress
    std::string where;                                                   // current.to_string(), for messages
    client_clock::time_point deadline = client_clock::time_point::max(); // of the whole request, body included
    std::chrono::milliseconds total{0};                                  // the timeout it came from, for messages

    http::headers headers;                // of the response
    http::headers trailers;               // of a chunked response, once its body ended
    std::string body;                     // parsed body bytes; [body_pos, size) not handed out yet
    std::size_t body_pos = 0;             // how much of body read() has handed out
    std::optional<message_parser> parser; // bound to headers and body; a fresh one per hop
    int status = 0;                       // of the final response, once its head arrived
    int version_minor = 1;                // of the final response

    bool head = false;           // a HEAD request: no body follows the response's head
    bool close_after = false;    // the request said "Connection: close"
    bool done = false;           // the response is complete and its connection released
    bool reused = false;         // the connection had carried a response before
    bool nothing_written = true; // no byte of the request reached the kernel
    bool got_bytes = false;      // a byte of the response arrived

    /// Abandons the connection (closed, never pooled: its state is unknown) and the permit.
    void drop() noexcept {
        conn.reset();
        permit.reset();
    }
};

/// Whether a request may be sent again after its connection failed: the method is idempotent (RFC 9110 9.2.2), or
/// the request carries an idempotency key (as Go's net/http accepts).
inline bool client_idempotent(const client_request_spec& s) noexcept {
    for (std::string_view m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
        if (s.method == m) return true;
    return s.headers.contains("Idempotency-Key") || s.headers.contains("X-Idempotency-Key");
}

/// The errnos of a connection that the server closed or reset under the request.
inline bool client_connection_lost(int code) noexcept {
    return code == EPIPE || code == ECONNRESET || code == ECONNABORTED || code == ENOTCONN || code == ESHUTDOWN;
}

/// The retry rule for a request on a reused connection that failed: retry once on a new connection when nothing of
/// the request was written (the server cannot have seen it, whatever the method), or when the method is idempotent
/// and the connection was lost (reset, broken pipe, or closed) before any byte of the response arrived. A timeout, a
/// cancellation or a malformed response is never retried.
inline bool client_may_retry(std::exception_ptr failed, const client_exchange& x,
                             const client_request_spec& s) noexcept {
    if (failed) {
        try {
            std::rethrow_exception(failed);
        } catch (const std::system_error& e) {
            if (e.code().category() != std::system_category() || !client_connection_lost(e.code().value()))
                return false;
        } catch (...) {
            return false;
        }
    }
    return x.nothing_written || (client_idempotent(s) && !x.got_bytes);
}

/// Rejects header fields that could split the request or are not fields at all.
inline void client_check_headers(const http::headers& h, std::string_view method, std::string_view where) {
    for (const field& f : h) {
        if (!is_token(f.name))
            throw std::invalid_argument(coring::detail::str_cat("coring: http: ", method, " ", where,
                                                                ": invalid header name \"", f.name, "\""));
        if (unsafe_field(f.value))
            throw std::invalid_argument(coring::detail::str_cat("coring: http: ", method, " ", where, ": header \"",
                                                                f.name, "\" has CR, LF or NUL in its value"));
    }
}

/// The request line and header block: Host (unless given), the client's default headers not overridden, the
/// request's own (framing fields excepted: the client decides those), and Content-Length when there is a body or
/// the method expects one.
inline void client_append_head(std::string& out, const client_request_spec& s, const url& u,
                               const http::headers& defaults) {
    out += s.method;
    out += ' ';
    out += u.target;
    out += " HTTP/1.1\r\n";
    if (!s.headers.contains("Host")) append_field(out, "Host", u.authority());
    for (const field& f : defaults) {
        if (s.headers.contains(f.name) || iequals(f.name, "Host") || client_framing_field(f.name)) continue;
        // The defaults are the client's, sent on every hop, so a redirect's rules apply to them as to the request's.
        if (s.cross_origin && client_field_in(f.name, client_credential_fields)) continue;
        if (s.body_dropped && client_field_in(f.name, client_body_fields)) continue;
        append_field(out, f.name, f.value);
    }
    for (const field& f : s.headers)
        if (!client_framing_field(f.name)) append_field(out, f.name, f.value);
    if (!s.body.empty() || s.method == "POST" || s.method == "PUT" || s.method == "PATCH") {
        out += "Content-Length: ";
        append_number(out, s.body.size());
        out += "\r\n";
    }
    out += "\r\n";
}

/// A protocol_error about the current hop of `x`.
inline protocol_error client_response_error(const client_exchange& x, std::string_view why) {
    return protocol_error(x.method, x.where, std::string(why));
}

/// The response is complete: hands the connection back to the pool when it can carry another request (keep-alive
/// on both sides, nothing unexpected after the response, not a 408: the server is dropping it), else closes it.
inline void client_complete(client_exchange& x) {
    x.done = true;
    client_connection& c = *x.conn;
    const bool reusable =
        x.parser->keep_alive() && c.begin == c.end && c.drained() && !x.close_after && x.parser->status_code() != 408;
    c.begin = c.end = 0;
    ++c.responses;
    if (reusable && x.host) x.pool->put_back(*x.host, std::move(x.conn));
    x.drop();
}

/// A connection for the current hop: an idle one of its host when there is one (unless `fresh`), else a new one,
/// once the host's connection limit lets it.
inline task<> client_acquire(client_exchange& x, bool fresh) {
    if (x.pool->closed) throw std::logic_error("coring: http: the client is closed");
    client_host& h = x.pool->host(client_pool_key(x.current));
    if (x.host != &h) {
        x.permit.reset();
        x.host = &h;
    }
    if (!x.permit.held() && h.limit) {
        auto acquiring = timeout_at(x.deadline, h.limit->acquire());
        co_await acquiring;
        x.permit = client_permit(h.limit.get());
    }
    if (!fresh) {
        if (auto c = x.pool->take_idle(h)) {
            x.conn = std::move(c);
            x.reused = true;
            co_return;
        }
    }
    const std::chrono::milliseconds ct = x.pool->opts.connect_timeout;
    const client_clock::time_point by = std::min(x.deadline, client_deadline(ct));
    std::unique_ptr<client_connection> c;
    bool connect_late = false;
    try {
        const client_tls_context* tls = nullptr;
#if CORING_HTTP_TLS
        if (x.current.scheme == "https") tls = &x.pool->tls_context();
#endif
        task<std::unique_ptr<client_connection>> connecting = client_connection::open(x.current, by, tls);
        c = co_await std::move(connecting);
    } catch (const coring::timeout_error&) {
        if (by >= x.deadline) throw; // the request's own timeout: reported as such
        connect_late = true;
    }
    if (connect_late)
        throw http::client_timeout_error(x.where, coring::detail::str_cat("coring: http: ", x.method, " ", x.where,
                                                                          ": connect timed out after ",
                                                                          std::to_string(ct.count()), " ms"));
    ++x.pool->opened;
    x.conn = std::move(c);
    x.reused = false;
}

/// 1xx: an interim response (100 Continue, 103 Early Hints) that the final one follows.
inline bool client_interim(int status) noexcept { return status >= 100 && status < 200; }

/// Sends the request of the current hop and reads the head of its final response (interim 1xx responses are
/// skipped); body bytes that came with it are in x.body. False when the server closed the connection before a
/// (final) response.
inline task<bool> client_send_and_read_head(client_exchange& x, const client_request_spec& s) {
    client_connection& c = *x.conn;
    x.nothing_written = true;
    x.got_bytes = false;
    // A small body goes out with the head in one send; a large one is sent from where it is, not copied.
    constexpr std::size_t inline_body = 16 * 1024;
    c.out.clear();
    client_append_head(c.out, s, x.current, x.pool->opts.default_headers);
    const bool body_inline = s.body.size() <= inline_body;
    if (body_inline) c.out += s.body;
    {
        // The first send alone: if it fails, nothing reached the server (the retry rule relies on that).
        auto first = c.write_some(c.out, x.deadline);
        const std::size_t sent = co_await first;
        x.nothing_written = false;
        if (sent < c.out.size()) {
            auto rest = c.write_all(std::string_view(c.out).substr(sent), x.deadline);
            co_await rest;
        }
        if (!body_inline) {
            auto body = c.write_all(s.body, x.deadline);
            co_await body;
        }
    }

    x.headers.clear();
    x.body.clear();
    x.body_pos = 0;
    x.parser.emplace(x.headers, x.body, x.pool->limits);
    x.parser->set_trailers(x.trailers);
    message_parser& p = *x.parser;
    p.expect_no_body(x.head);
    bool status_known = false; // the status line of the message being parsed has been fed
    bool final_done = false;
    for (;;) {
        if (c.begin == c.end) {
            auto reading = c.read_some(std::span(c.buffer(), client_connection::buffer_size), x.deadline);
            const std::size_t n = co_await reading;
            if (n == 0) {
                if (!p.in_message()) co_return false; // nothing, or only interim responses
                p.finish();
                throw client_response_error(
                    x, coring::detail::str_cat("response cut short by the server closing (", p.error_reason(), ")"));
            }
            x.got_bytes = true;
            c.begin = 0;
            c.end = n;
        }
        // The status line is fed alone: whether a body follows depends on the status (1xx, 204 and 304 have none
        // whatever Content-Length says), and the parser must know that before it reaches the end of the headers.
        const char* data = c.buffer() + c.begin;
        std::size_t len = c.end - c.begin;
        bool line_end = false;
        if (!status_known)
            if (const void* nl = std::memchr(data, '\n', len)) {
                len = static_cast<std::size_t>(static_cast<const char*>(nl) - data) + 1;
                line_end = true;
            }
        const auto r = p.feed(data, len);
        c.begin += r.consumed;
        if (r.state == parse_state::error)
            throw client_response_error(x, coring::detail::str_cat("malformed response (", p.error_reason(), ")"));
        if (line_end && !status_known && p.status_code() != 0) {
            status_known = true;
            const int code = p.status_code();
            if (code == 101)
                throw client_response_error(x, "unexpected 101 Switching Protocols (the client asked for no upgrade)");
            p.expect_no_body(x.head || client_interim(code) || code == 204 || code == 304);
        }
        if (r.state == parse_state::message_done) {
            if (client_interim(p.status_code())) { // 100 Continue, 103 Early Hints: the real response follows
                p.next();
                p.expect_no_body(x.head);
                status_known = false;
                continue;
            }
            final_done = true;
        }
        if (final_done || (p.headers_done() && !client_interim(p.status_code()))) break;
    }
    x.status = p.status_code();
    x.version_minor = p.version_minor();
    if (final_done) client_complete(x);
    co_return true;
}

/// Parses more of the response: returns once new body bytes are in x.body or the response is complete.
inline task<> client_pump(client_exchange& x) {
    if (x.done) co_return;
    if (!x.conn) throw std::logic_error("coring: http: read from a response stream that failed or was closed");
    client_connection& c = *x.conn;
    message_parser& p = *x.parser;
    for (;;) {
        if (c.begin == c.end) {
            auto reading = c.read_some(std::span(c.buffer(), client_connection::buffer_size), x.deadline);
            const std::size_t n = co_await reading;
            if (n == 0) {
                c.begin = c.end = 0;
                if (p.finish() == parse_state::message_done) { // a body delimited by the end of the connection
                    // Over TLS, only an end announced with close_notify delimits it: an attacker can end the TCP
                    // stream anywhere (tls::truncated, named by the caller).
                    if (std::exception_ptr cut = c.cut_short()) std::rethrow_exception(cut);
                    client_complete(x);
                    co_return;
                }
                throw client_response_error(
                    x,
                    coring::detail::str_cat("response body cut short by the server closing (", p.error_reason(), ")"));
            }
            c.begin = 0;
            c.end = n;
        }
        const std::size_t had = x.body.size();
        const auto r = p.feed(c.buffer() + c.begin, c.end - c.begin);
        c.begin += r.consumed;
        if (r.state == parse_state::error)
            throw client_response_error(x, coring::detail::str_cat("malformed response body (", p.error_reason(), ")"));
        if (r.state == parse_state::message_done) {
            client_complete(x);
            co_return;
        }
        if (x.body.size() > had) co_return;
    }
}

/// Reads and drops the body of a redirect, so that its connection can serve the next hop; a large one is not worth
/// it: the connection is closed instead.
inline task<> client_discard_body(client_exchange& x) {
    constexpr std::size_t worth_reading = 64 * 1024;
    std::size_t dropped = 0;
    while (!x.done) {
        dropped += x.body.size();
        x.body.clear();
        if (dropped > worth_reading) {
            x.drop();
            break;
        }
        task<> more = client_pump(x);
        co_await std::move(more);
    }
    x.body.clear();
    x.body_pos = 0;
}

/// Whether a 408 answer is worth one more try on a new connection (RFC 9110 15.5.9 allows it): on a reused connection
/// it most likely means the server timed the idle connection out as the request arrived, not that the request was
/// slow. Only for an idempotent request: the server may have read and acted on it anyway.
inline bool client_retry_408(const client_exchange& x, const client_request_spec& s) noexcept {
    return x.status == 408 && x.reused && client_idempotent(s);
}

/// One hop: a connection, the request, the head of the response. A reused connection that turns out to be dead
/// (lost, or answered with a 408) is replaced once, by the retry rule (client_may_retry, client_retry_408).
inline task<> client_run_hop(client_exchange& x, const client_request_spec& s) {
    for (int attempt = 0;; ++attempt) {
        task<> acquiring = client_acquire(x, attempt > 0);
        co_await std::move(acquiring);
        std::exception_ptr failed;
        bool answered = false;
        try {
            task<bool> exchanging = client_send_and_read_head(x, s);
            answered = co_await std::move(exchanging);
        } catch (...) {
            failed = std::current_exception();
        }
        bool retry = false;
        if (!failed && answered) {
            if (attempt > 0 || !client_retry_408(x, s)) co_return;
            retry = true;
        } else {
            retry = attempt == 0 && x.reused && client_may_retry(failed, x, s);
        }
        x.conn.reset(); // never pooled again: its state is unknown (the permit stays for the retry)
        x.done = false; // a 408 may have completed (and released its connection)
        if (retry) continue;
        if (failed) std::rethrow_exception(failed);
        throw std::system_error(ECONNRESET, std::system_category(),
                                coring::detail::str_cat("coring: http: ", x.method, " ", x.where,
                                                        ": the server closed the connection without a response"));
    }
}

/// The statuses whose Location is followed.
inline bool client_is_redirect(int status) noexcept {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/// Where a redirect leads; std::invalid_argument naming the URL and the Location when it is not a usable URL.
inline url client_redirect_target(const client_exchange& x, std::string_view location) {
    std::string why;
    try {
        return resolve_reference(x.current, location);
    } catch (const std::invalid_argument& e) {
        why = e.what();
    }
    throw std::invalid_argument(
        coring::detail::str_cat("coring: http: ", x.method, " ", x.where, ": redirect to an invalid Location: ", why));
}

/// Sends the request and follows redirects until the head of the final response has arrived.
inline task<> client_run_exchange(client_exchange& x, client_request_spec& s, bool follow, std::size_t max_redirects) {
    for (std::size_t redirects = 0;;) {
        x.where = x.current.to_string();
        x.method = s.method;
#if !CORING_HTTP_TLS
        if (x.current.scheme != "http")
            throw std::invalid_argument(coring::detail::str_cat(
                "coring: http: ", s.method, " ", x.where,
                ": HTTPS needs coring::http built with OpenSSL (coring::tls, CORING_HTTP_TLS)"));
#endif
        x.head = s.method == "HEAD";
        x.done = false;
        task<> hop = client_run_hop(x, s);
        co_await std::move(hop);
        if (!follow || !client_is_redirect(x.status)) co_return;
        const auto location = x.headers.get("Location");
        if (!location) co_return; // nowhere to go: the 3xx is the answer
        url next = client_redirect_target(x, *location);
        if (redirects == max_redirects)
            throw too_many_redirects(x.where, coring::detail::str_cat("coring: http: ", s.method, " ", x.where,
                                                                      ": more than ", std::to_string(max_redirects),
                                                                      " redirects (the request was for ",
                                                                      x.first.to_string(), ")"));
        ++redirects;
        task<> discarding = client_discard_body(x);
        co_await std::move(discarding);
        // 303 means "GET the result there"; after a POST, 301 and 302 do the same in browsers and aiohttp; 307 and
        // 308 repeat the request as it was.
        if ((x.status == 303 && s.method != "HEAD") || ((x.status == 301 || x.status == 302) && s.method == "POST")) {
            s.method = "GET";
            s.body.clear();
            for (std::string_view name : client_body_fields) s.headers.remove(name);
            s.body_dropped = true;
        }
        // Credentials are for the origin they were given for, not for whoever it redirects to; once the request has
        // left it, they stay behind for the rest of the chain (a later hop back is the redirecting site's choice).
        if (!client_same_origin(next, x.current)) {
            for (std::string_view name : client_credential_fields) s.headers.remove(name);
            s.headers.remove("Host");
            s.cross_origin = true;
        }
        x.current = std::move(next);
    }
}

/// Rethrows a failure of the request `x` so that it names the URL: a coring::timeout_error becomes an
/// http::client_timeout_error, a std::system_error gets the method and URL in front of its message (same code);
/// cancellation and the client's own errors pass unchanged.
[[noreturn]] inline void client_rethrow_named(std::exception_ptr failed, const client_exchange& x) {
    try {
        std::rethrow_exception(failed);
    } catch (const http::client_timeout_error&) {
        throw;
    } catch (const coring::timeout_error&) {
        throw http::client_timeout_error(x.where, coring::detail::str_cat("coring: http: ", x.method, " ", x.where,
                                                                          ": timed out after ",
                                                                          std::to_string(x.total.count()), " ms"));
#if CORING_HTTP_TLS
    } catch (const coring::tls::error& e) {
        // "coring: tls handshake with h:443: certificate verify failed: ..." becomes "coring: http: GET https://h/:
        // tls handshake with h:443: ...", of the same type (tls::truncated stays one).
        std::string_view what = e.what();
        if (what.starts_with("coring: http: ")) throw;
        if (what.starts_with("coring: ")) what.remove_prefix(8);
        std::string named = coring::detail::str_cat("coring: http: ", x.method, " ", x.where, ": ", what);
        if (dynamic_cast<const coring::tls::truncated*>(&e)) throw coring::tls::truncated(std::move(named));
        throw coring::tls::error(std::move(named));
#endif
    } catch (const std::system_error& e) {
        std::string_view what = e.what();
        if (what.starts_with("coring: http: ")) throw;
        // "coring: connect 127.0.0.1:9: Connection refused" becomes "coring: http: GET http://127.0.0.1:9/:
        // connect 127.0.0.1:9: Connection refused" (system_error appends the code's message again).
        if (what.starts_with("coring: ")) what.remove_prefix(8);
        const std::string tail = ": " + e.code().message();
        if (what.ends_with(tail)) what.remove_suffix(tail.size());
        throw std::system_error(e.code(),
                                coring::detail::str_cat("coring: http: ", x.method, " ", x.where, ": ", what));
    }
}

} // namespace detail

// ---- streamed responses ---------------------------------------------------------------------------------------------

namespace detail {
struct client_stream_access;
} // namespace detail

/// A response whose body is read piece by piece as it arrives (aiohttp's response.content): client::open() returns
/// it as soon as the head has arrived, so status and headers are known before the body is read.
///
/// Reading the body to its end hands the connection back to the client's pool; a stream destroyed (or close()d)
/// before that closes its connection, since the rest of the body would still be on the way. Reads have the request's
/// deadline (client_options::timeout, from the call to open()). Loop thread only; the stream must outlive its reads.
class client_stream {
public:
    /// No response: only done(), assignment and destruction may be used.
    client_stream() noexcept = default;
    /// Takes over the response (and its connection).
    client_stream(client_stream&&) noexcept = default;
    /// Takes over the response; the one held before is dropped (its connection closed unless it was complete).
    client_stream& operator=(client_stream&&) noexcept = default;

    /// Status code of the final response.
    [[nodiscard]] int status() const noexcept { return x_->status; }
    /// The standard reason phrase of the status.
    [[nodiscard]] std::string_view reason() const noexcept { return reason_phrase(x_->status); }
    /// HTTP/1.<version_minor>.
    [[nodiscard]] int version_minor() const noexcept { return x_->version_minor; }
    /// The response's header fields.
    [[nodiscard]] const http::headers& headers() const noexcept { return x_->headers; }
    /// The URL that answered (after redirects).
    [[nodiscard]] const http::url& url() const noexcept { return x_->current; }
    /// Trailer fields of a chunked response, apart from headers(); complete once done().
    [[nodiscard]] const http::headers& trailers() const noexcept { return x_->trailers; }
    /// Whether the whole body has been read (read() returns 0 from now on).
    [[nodiscard]] bool done() const noexcept { return !x_ || (x_->done && x_->body_pos == x_->body.size()); }

    /// Reads body bytes into `buf` as they arrive: at least one, at most buf.size(); 0 at the end of the body (or
    /// for an empty buf). Throws protocol_error (malformed or cut-short body), http::client_timeout_error,
    /// std::system_error (all naming the URL) and cancelled_error; after a failure the connection is closed and reads
    /// throw std::logic_error.
    task<std::size_t> read(std::span<char> buf) {
        detail::client_exchange& x = check();
        if (buf.empty()) co_return 0;
        if (x.body_pos == x.body.size() && !x.done) {
            task<> more = pump(x);
            co_await std::move(more);
        }
        co_return take(x, buf);
    }
    /// read() into bytes.
    task<std::size_t> read(std::span<std::byte> buf) {
        return read(std::span<char>(reinterpret_cast<char*>(buf.data()), buf.size()));
    }

    /// The next piece of the body as it arrives; empty at the end. Errors as read().
    task<std::string> read_some() {
        detail::client_exchange& x = check();
        if (x.body_pos == x.body.size() && !x.done) {
            task<> more = pump(x);
            co_await std::move(more);
        }
        std::string piece(x.body, x.body_pos);
        x.body.clear();
        x.body_pos = 0;
        co_return piece;
    }

    /// The rest of the body; a body longer than client_options::max_body is a protocol_error. Errors as read().
    task<std::string> read_all() {
        detail::client_exchange& x = check();
        std::exception_ptr failed;
        try {
            const std::size_t limit = x.pool->opts.max_body;
            if (const auto cl = x.headers.get("Content-Length"); cl && !x.done) {
                std::size_t n = 0;
                std::from_chars(cl->data(), cl->data() + cl->size(), n);
                if (n > limit) throw detail::client_response_error(x, too_large(limit));
            }
            while (!x.done) {
                if (x.body.size() - x.body_pos > limit) throw detail::client_response_error(x, too_large(limit));
                task<> more = detail::client_pump(x);
                co_await std::move(more);
            }
            if (x.body.size() - x.body_pos > limit) throw detail::client_response_error(x, too_large(limit));
        } catch (...) {
            failed = std::current_exception();
        }
        if (failed) {
            x.drop();
            detail::client_rethrow_named(failed, x);
        }
        std::string all;
        if (x.body_pos == 0) all = std::move(x.body);
        else all.assign(x.body, x.body_pos);
        x.body.clear();
        x.body_pos = 0;
        co_return all;
    }

#if CORING_HTTP_HAS_JSON
    /// The rest of the body (read_all()) parsed as JSON, as client_response::json(): throws json_error naming the URL
    /// when it is not valid JSON, and what read_all() throws. Only with nlohmann/json (see <coring/http/json.hpp>).
    template <class Json = nlohmann::json>
        requires detail::nlohmann_json_type<Json>
    [[nodiscard]] task<Json> json() {
        task<std::string> reading = read_all();
        const std::string text = co_await std::move(reading);
        co_return detail::json_parse_response<Json>(text, x_->current, x_->status,
                                                    x_->headers.get_or("Content-Type", ""));
    }
#endif

    /// Gives up on the rest of the body: the connection is closed now (not pooled). Reads then return 0.
    void close() noexcept {
        if (!x_) return;
        x_->drop();
        x_->done = true;
        x_->body.clear();
        x_->body_pos = 0;
    }

private:
    friend struct detail::client_stream_access;

    explicit client_stream(std::unique_ptr<detail::client_exchange> x) noexcept : x_(std::move(x)) {}

    /// More of the body; a failure closes the connection and is rethrown naming the URL.
    static task<> pump(detail::client_exchange& x) {
        std::exception_ptr failed;
        try {
            task<> more = detail::client_pump(x);
            co_await std::move(more);
        } catch (...) {
            failed = std::current_exception();
        }
        if (failed) {
            x.drop();
            detail::client_rethrow_named(failed, x);
        }
    }

    detail::client_exchange& check() const {
        if (!x_) throw std::logic_error("coring: http: read from an empty client_stream");
        return *x_;
    }
    static std::string too_large(std::size_t limit) {
        return coring::detail::str_cat("response body larger than client_options::max_body (", std::to_string(limit),
                                       " bytes)");
    }
    static std::size_t take(detail::client_exchange& x, std::span<char> buf) noexcept {
        const std::size_t n = std::min(buf.size(), x.body.size() - x.body_pos);
        if (n) std::memcpy(buf.data(), x.body.data() + x.body_pos, n);
        x.body_pos += n;
        if (x.body_pos == x.body.size()) {
            x.body.clear();
            x.body_pos = 0;
        }
        return n;
    }

    std::unique_ptr<detail::client_exchange> x_;
};

namespace detail {

/// What the request functions need of client_stream's insides.
struct client_stream_access {
    static client_stream make(std::unique_ptr<client_exchange> x) noexcept { return client_stream(std::move(x)); }
    static client_exchange& exchange(client_stream& s) noexcept { return *s.x_; }
};

/// Sends a request and returns once the head of the final response has arrived (the body is read from the stream).
/// The implementation of client::open().
inline task<client_stream> client_open(std::shared_ptr<detail::client_pool> pool, std::string method,
                                       std::string target, std::string body, http::headers headers,
                                       request_options ro) {
    auto x = std::make_unique<detail::client_exchange>();
    x->pool = std::move(pool);
    x->first = url::parse(target); // std::invalid_argument naming it
    x->current = x->first;
    x->where = x->current.to_string();
    for (char& c : method)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A'); // as aiohttp: "get" means GET
    if (!detail::is_token(method))
        throw std::invalid_argument(
            coring::detail::str_cat("coring: http: invalid method \"", method, "\" for ", x->where));
    if (method == "CONNECT") // a tunnel, not a request for a resource: its response would never end
        throw std::invalid_argument(
            coring::detail::str_cat("coring: http: CONNECT is not supported by the client (", x->where, ")"));
    x->method = method;
    detail::client_check_headers(headers, method, x->where);
    detail::client_check_headers(x->pool->opts.default_headers, method, x->where);
    x->total = ro.timeout.value_or(x->pool->opts.timeout);
    x->deadline = detail::client_deadline(x->total);
    // The request's own Connection field, else the defaults': whichever is sent decides whether the connection may
    // be pooled afterwards.
    auto conn = headers.get("Connection");
    if (!conn) conn = x->pool->opts.default_headers.get("Connection");
    if (conn) x->close_after = detail::has_token(*conn, "close");
    detail::client_request_spec spec{std::move(method), std::move(body), std::move(headers)};
    std::exception_ptr failed;
    try {
        task<> exchanging =
            detail::client_run_exchange(*x, spec, ro.follow_redirects.value_or(x->pool->opts.follow_redirects),
                                        ro.max_redirects.value_or(x->pool->opts.max_redirects));
        co_await std::move(exchanging);
    } catch (...) {
        failed = std::current_exception();
    }
    if (failed) {
        x->drop(); // a failed or cancelled request never leaves a half-used connection in the pool
        detail::client_rethrow_named(failed, *x);
    }
    co_return client_stream_access::make(std::move(x));
}

/// Sends a request and reads the whole response. The implementation of client::request().
inline task<client_response> client_fetch(std::shared_ptr<detail::client_pool> pool, std::string method,
                                          std::string target, std::string body, http::headers headers,
                                          request_options ro) {
    task<client_stream> opening =
        client_open(std::move(pool), std::move(method), std::move(target), std::move(body), std::move(headers), ro);
    client_stream st = co_await std::move(opening);
    client_response r;
    task<std::string> reading = st.read_all();
    r.body = co_await std::move(reading);
    client_exchange& x = client_stream_access::exchange(st);
    r.status = x.status;
    r.version_minor = x.version_minor;
    r.headers = std::move(x.headers);
    r.trailers = std::move(x.trailers);
    r.url = std::move(x.current);
    co_return r;
}

} // namespace detail

// ---- the client -----------------------------------------------------------------------------------------------------

/// How client::websocket opens a connection.
struct websocket_client_options {
    websocket_options limits{};              ///< message and frame limits, keep-alive pings, the close timeout
    std::vector<std::string> subprotocols{}; ///< offered in Sec-WebSocket-Protocol, preferred first
    /// More request headers (Origin, Authorization, Cookie). The client's default_headers go too, unless named here;
    /// the handshake's own fields (Host, Upgrade, Connection, Sec-WebSocket-*) are refused (std::invalid_argument).
    http::headers headers{};
    std::chrono::milliseconds timeout{30'000}; ///< for the whole opening: connect, TLS, handshake
};

/// The server did not accept a WebSocket handshake (aiohttp's WSServerHandshakeError): it answered `status` (0 when
/// the answer was not HTTP), or its 101 did not carry the right Sec-WebSocket-Accept.
class websocket_handshake_error : public websocket_error {
public:
    websocket_handshake_error(int status, const std::string& what)
        : websocket_error(close_code::abnormal, what), status_(status) {}
    [[nodiscard]] int status() const noexcept { return status_; }

private:
    int status_;
};

namespace detail {

/// The client's opening handshake over a connected stream (RFC 6455 section 4.1), then the websocket, which owns
/// the stream.
template <class S>
task<http::websocket> ws_client_handshake(S s, url u, std::string where, websocket_client_options o,
                                          client_clock::time_point deadline, http::headers defaults) {
    std::random_device rd;
    std::uint8_t raw[16];
    for (std::uint8_t& b : raw) b = static_cast<std::uint8_t>(rd());
    const std::string key = base64_encode(raw, sizeof raw);
    std::string req =
        coring::detail::str_cat("GET ", u.target, " HTTP/1.1\r\nHost: ", u.authority(),
                                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ", key,
                                "\r\nSec-WebSocket-Version: 13\r\n");
    for (const std::string& p : o.subprotocols)
        if (p.empty() || !is_token(p))
            throw std::invalid_argument("coring: websocket: subprotocol \"" + p + "\" is not a token");
    if (o.limits.permessage_deflate) {
        if (!ws_deflate_available)
            throw std::invalid_argument("coring: websocket: permessage_deflate needs coring built with zlib "
                                        "(CORING_HTTP_ZLIB)");
        req += coring::detail::str_cat("Sec-WebSocket-Extensions: ", ws_deflate_offer, "\r\n");
    }
    if (!o.subprotocols.empty()) {
        req += "Sec-WebSocket-Protocol: ";
        for (std::size_t i = 0; i < o.subprotocols.size(); ++i) {
            if (i) req += ", ";
            req += o.subprotocols[i];
        }
        req += "\r\n";
    }
    // The handshake's own fields are the client's to write; the client's default headers (User-Agent, say) go too,
    // unless the options give the same field.
    const auto own = [](std::string_view name) {
        return iequals(name, "Host") || iequals(name, "Upgrade") || iequals(name, "Connection") ||
               iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") ||
               (name.size() >= 14 && iequals(name.substr(0, 14), "Sec-WebSocket-"));
    };
    for (const field& f : defaults)
        if (!own(f.name) && !o.headers.contains(f.name) && is_token(f.name) && !unsafe_field(f.value))
            req += coring::detail::str_cat(f.name, ": ", f.value, "\r\n");
    for (const field& f : o.headers) {
        if (!is_token(f.name) || unsafe_field(f.value))
            throw std::invalid_argument("coring: websocket: a request header has an invalid name, or CR, LF or NUL");
        if (own(f.name))
            throw std::invalid_argument("coring: websocket: the header " + f.name +
                                        " is the handshake's own (use websocket_client_options::subprotocols)");
        req += coring::detail::str_cat(f.name, ": ", f.value, "\r\n");
    }
    req += "\r\n";
    co_await timeout_at(deadline, s.write_all(req));
    std::string in;
    char buf[4096];
    std::size_t head_end = std::string::npos;
    while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
        if (in.size() > 16 * 1024) throw websocket_handshake_error(0, where + ": the answer's head is over 16 KiB");
        const std::size_t n = co_await timeout_at(deadline, s.read(std::span(buf)));
        if (n == 0)
            throw websocket_handshake_error(0, where + ": the server closed the connection during the handshake");
        in.append(buf, n);
    }
    if (head_end > 16 * 1024) throw websocket_handshake_error(0, where + ": the answer's head is over 16 KiB");
    const std::string_view head = std::string_view(in).substr(0, head_end);
    const std::size_t line_end = head.find("\r\n");
    const std::string_view status_line = head.substr(0, line_end);
    int status = 0;
    if (status_line.starts_with("HTTP/1.1 ") && status_line.size() >= 12 &&
        (status_line.size() == 12 || status_line[12] == ' '))
        std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
    if (status != 101)
        throw websocket_handshake_error(status,
                                        where + ": the server answered \"" + std::string(status_line) + "\", not 101");
    http::headers got;
    for (std::string_view rest = line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
         !rest.empty();) {
        const std::size_t e = rest.find("\r\n");
        const std::string_view line = rest.substr(0, e);
        rest = e == std::string_view::npos ? std::string_view() : rest.substr(e + 2);
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
        got.add(line.substr(0, colon), value);
    }
    const auto upgrade = got.get("Upgrade");
    const auto connection = got.get("Connection");
    const auto accept = got.get("Sec-WebSocket-Accept");
    if (!upgrade || !has_token(*upgrade, "websocket") || !connection || !has_token(*connection, "upgrade"))
        throw websocket_handshake_error(101, where + ": a 101 without Upgrade: websocket");
    std::optional<ws_deflate_params> deflate;
    if (got.contains("Sec-WebSocket-Extensions")) {
        if (!o.limits.permessage_deflate)
            throw websocket_handshake_error(101, where + ": the server chose an extension, and none was offered");
        deflate = ws_deflate_check_answer(got.get_all("Sec-WebSocket-Extensions"));
        if (!deflate)
            throw websocket_handshake_error(101, where +
                                                     ": the server answered extensions this client did not "
                                                     "offer, or permessage-deflate parameters it cannot take: " +
                                                     std::string(got.get_or("Sec-WebSocket-Extensions", "")));
    }
    if (!accept || *accept != ws_accept_key(key))
        throw websocket_handshake_error(101, where + ": a wrong Sec-WebSocket-Accept");
    std::string proto(got.get_or("Sec-WebSocket-Protocol", ""));
    if (!proto.empty()) {
        bool offered = false;
        for (const std::string& p : o.subprotocols) offered = offered || p == proto;
        if (!offered)
            throw websocket_handshake_error(101, where + ": the server chose subprotocol \"" + proto +
                                                     "\", which was not offered");
    }
    std::string leftover = in.substr(head_end + 4);
    co_return http::websocket(std::make_unique<ws_transport_own<S>>(std::move(s)), http::websocket::role::client,
                              std::move(leftover), o.limits, std::move(proto), deflate);
}

/// client::websocket: ws:// over TCP, wss:// over TLS with the client's context (verified as its https:// requests).
inline task<http::websocket> client_websocket([[maybe_unused]] std::shared_ptr<client_pool> pool, std::string where,
                                              websocket_client_options o) {
    std::string as_http;
    if (where.starts_with("ws://")) as_http = "http://" + where.substr(5);
    else if (where.starts_with("wss://")) as_http = "https://" + where.substr(6);
    else throw std::invalid_argument("coring: websocket: \"" + where + "\": expected ws:// or wss://");
    const url u = url::parse(as_http);
    const client_clock::time_point deadline = client_deadline(o.timeout);
    task<tcp_stream> connecting = tcp_stream::connect(u.host, u.port);
    tcp_stream s = co_await timeout_at(deadline, std::move(connecting));
    s.set_nodelay(true); // frames are written whole; Nagle would hold small ones back
    if (u.scheme == "https") {
#if CORING_HTTP_TLS
        task<coring::tls::stream> handshaking = coring::tls::stream::connect(pool->tls_context(), std::move(s), u.host);
        coring::tls::stream t = co_await timeout_at(deadline, std::move(handshaking));
        task<http::websocket> opening =
            ws_client_handshake(std::move(t), u, where, std::move(o), deadline, pool->opts.default_headers);
        co_return co_await std::move(opening);
#else
        throw std::invalid_argument("coring: websocket: \"" + where + "\": wss:// needs coring built with TLS");
#endif
    }
    task<http::websocket> opening =
        ws_client_handshake(std::move(s), u, where, std::move(o), deadline, pool->opts.default_headers);
    co_return co_await std::move(opening);
}

} // namespace detail

/// An HTTP/1.1 client with a connection pool (aiohttp's ClientSession).
///
///     coring::http::client c;
///     coring::http::client_response r = co_await c.get("https://example.com/");
///     std::cout << r.status << " " << r.body.size() << "\n";
///
/// https:// URLs (with coring::tls, CORING_HTTP_TLS) are fetched over TLS, verified by default against the system's
/// trust store with the URL's host as SNI and as the name the certificate must carry (client_options::tls for a
/// private CA or, in tests only, no verification); the handshake counts against connect_timeout. A TLS connection
/// whose server ends it without close_notify is accepted once the response's own framing (Content-Length, the last
/// chunk) is complete, but a response delimited by the end of the connection then fails with tls::truncated.
///
/// Connections are kept per origin (scheme, host and port) and reused (keep-alive) for later requests, up to
/// max_idle_per_host idle ones for at most idle_lifetime each; many requests may run at once, each on a connection of
/// its own (at most max_connections_per_host per host; more wait). A connection goes back to the pool only after its
/// response was read completely and when both sides allow it: no "Connection: close", not HTTP/1.0 without keep-alive,
/// not a body delimited by the end of the connection, nothing unexpected after the response. A failed or cancelled
/// request closes its connection.
///
/// A server may close an idle connection at any moment. Before a pooled connection is used, the client checks that
/// the server has neither closed it nor sent anything on it since (a 408, say, whether still in the socket or already
/// in the stream's buffer): such a connection is closed, not used. When a request on a reused connection fails anyway
/// (the close crossed the request), it is sent once more on a new connection if nothing of it was written, or if its
/// method is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or any request with an Idempotency-Key header) and no
/// byte of the response had arrived; an idempotent request answered with a 408 on a reused connection (the server
/// timed it out as the request arrived) is sent once more on a new connection too. A POST whose bytes went out is
/// never sent twice.
///
/// Redirects (301, 302, 303, 307, 308 with a Location, relative ones resolved against the URL) are followed up to
/// max_redirects; 303, and 301 or 302 after a POST, continue as a GET without body or the fields that described it
/// (Content-Type, Content-Encoding, Content-Language, Content-Location); 307 and 308 repeat the method and body.
/// After a redirect to another origin (scheme, host or port; "http://a" and "http://a:80" are one origin), the
/// credentials (Authorization, Proxy-Authorization, Cookie, Cookie2), from the request or from default_headers, are
/// not sent for the rest of the chain, and a Host header given with the request is replaced by the new host's.
/// Redirects may go from http:// to https:// and back (the scheme is part of the origin: credentials stay behind);
/// other schemes are refused (std::invalid_argument).
///
/// Requests: the method is uppercased; a Host header (with the port when it is not the scheme's default) unless the
/// request has one; the default headers (User-Agent: coring) unless overridden; Content-Length for a body, and
/// "Content-Length: 0" for a POST, PUT or PATCH without one; Content-Length and Transfer-Encoding given by the caller
/// or in the default headers are ignored (the client frames the body). Header names must be tokens and values free of
/// CR, LF and NUL (std::invalid_argument).
///
/// Errors name the method and URL: malformed responses are protocol_error, timeouts http::client_timeout_error (a
/// coring::timeout_error), connection failures std::system_error with the errno, TLS failures tls::error with
/// OpenSSL's reason ("coring: http: GET https://h/: tls handshake with h:443: certificate verify failed: ..."), an
/// end without close_notify of a body delimited by the end of the connection tls::truncated, bad URLs
/// std::invalid_argument (https:// too in a build without TLS). A status such as 404 or 500 is a response, not an
/// error. cancelled_error passes unchanged.
///
/// Loop thread only. Requests and streams keep what they need of the client alive, so the client may be destroyed
/// while they run (their connections are then closed instead of pooled).
class client {
public:
    /// A client with the given options.
    explicit client(client_options options = {}) : pool_(std::make_shared<detail::client_pool>(std::move(options))) {}
    client(const client&) = delete;
    client& operator=(const client&) = delete;
    /// Closes every idle connection (synchronously); requests still running finish on their own.
    ~client() {
        if (pool_) pool_->shut();
    }

    /// Sends `method` to `url` with `body` and `headers` and reads the whole response (aiohttp's
    /// session.request()). An empty body sends none (but "Content-Length: 0" for POST, PUT and PATCH).
    [[nodiscard]] task<client_response> request(std::string method, std::string url, std::string body = {},
                                                http::headers headers = {}, request_options options = {}) {
        return detail::client_fetch(pool_, std::move(method), std::move(url), std::move(body), std::move(headers),
                                    options);
    }
    /// GET `url`.
    [[nodiscard]] task<client_response> get(std::string url, http::headers headers = {}) {
        return request("GET", std::move(url), {}, std::move(headers));
    }
    /// Opens a WebSocket to a ws:// or wss:// URL (aiohttp's ws_connect): connects, performs the opening handshake
    /// (its Sec-WebSocket-Accept checked; wss:// through the client's TLS settings, verified as its https://
    /// requests are) and returns the connection, which the caller owns and closes (websocket::close). Throws
    /// websocket_handshake_error when the server does not switch protocols, std::invalid_argument for another scheme,
    /// and what connecting throws. Not pooled: the connection is the caller's alone.
    [[nodiscard]] task<http::websocket> websocket(std::string url) {
        return detail::client_websocket(pool_, std::move(url), websocket_client_options{});
    }
    /// As websocket(url), with subprotocols, headers, limits and a timeout.
    [[nodiscard]] task<http::websocket> websocket(std::string url, const websocket_client_options& options) {
        return detail::client_websocket(pool_, std::move(url), options);
    }
    /// HEAD `url` (the response has no body).
    [[nodiscard]] task<client_response> head(std::string url, http::headers headers = {}) {
        return request("HEAD", std::move(url), {}, std::move(headers));
    }
    /// POST `body` to `url`, with a Content-Type unless `content_type` is empty.
    [[nodiscard]] task<client_response> post(std::string url, std::string body, std::string_view content_type = {},
                                             http::headers headers = {}) {
        with_type(headers, content_type);
        return request("POST", std::move(url), std::move(body), std::move(headers));
    }
    /// PUT `body` to `url`, with a Content-Type unless `content_type` is empty.
    [[nodiscard]] task<client_response> put(std::string url, std::string body, std::string_view content_type = {},
                                            http::headers headers = {}) {
        with_type(headers, content_type);
        return request("PUT", std::move(url), std::move(body), std::move(headers));
    }
    /// PATCH `url` with `body`, with a Content-Type unless `content_type` is empty.
    [[nodiscard]] task<client_response> patch(std::string url, std::string body, std::string_view content_type = {},
                                              http::headers headers = {}) {
        with_type(headers, content_type);
        return request("PATCH", std::move(url), std::move(body), std::move(headers));
    }
    /// DELETE `url` (`delete` is a C++ keyword).
    [[nodiscard]] task<client_response> del(std::string url, http::headers headers = {}) {
        return request("DELETE", std::move(url), {}, std::move(headers));
    }

    /// Sends a request and returns when the head of the final response has arrived; the body is read from the
    /// client_stream as it arrives (aiohttp's `async with session.get(url) as resp`).
    [[nodiscard]] task<client_stream> open(std::string method, std::string url, std::string body = {},
                                           http::headers headers = {}, request_options options = {}) {
        return detail::client_open(pool_, std::move(method), std::move(url), std::move(body), std::move(headers),
                                   options);
    }

    /// Closes every idle connection and refuses new requests (std::logic_error); requests in flight finish, and
    /// close their connections instead of pooling them.
    [[nodiscard]] task<> close() { return close_pool(pool_); }

    /// Idle connections in the pool, all hosts together.
    [[nodiscard]] std::size_t idle_connections() const noexcept {
        std::size_t n = 0;
        for (const auto& [key, h] : pool_->hosts) n += h.idle.size();
        return n;
    }
    /// Connections opened so far (a measure of keep-alive reuse).
    [[nodiscard]] std::size_t connections_opened() const noexcept { return pool_->opened; }
    /// The options the client was made with.
    [[nodiscard]] const client_options& options() const noexcept { return pool_->opts; }

private:
    static void with_type(http::headers& headers, std::string_view content_type) {
        if (!content_type.empty() && !headers.contains("Content-Type")) headers.add("Content-Type", content_type);
    }
    static task<> close_pool(std::shared_ptr<detail::client_pool> pool) {
        pool->closed = true;
        std::vector<std::unique_ptr<detail::client_connection>> idle;
        for (auto& [key, h] : pool->hosts) {
            for (auto& c : h.idle) idle.push_back(std::move(c));
            h.idle.clear();
        }
        for (auto& c : idle) {
            auto closing = c->close();
            co_await closing;
        }
    }

    std::shared_ptr<detail::client_pool> pool_;
};

} // namespace coring::http
