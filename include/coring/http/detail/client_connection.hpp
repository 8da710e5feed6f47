#pragma once

// One pooled HTTP client connection, plain or TLS, and its deadlines.

#include <coring/detail/inner_awaiter.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/http/client_response.hpp>
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

} // namespace detail

} // namespace coring::http
