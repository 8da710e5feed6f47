#pragma once

// A response whose body is read as it arrives (client::open), and the request functions behind client::open and
// client::request.

#include <coring/detail/inner_awaiter.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/http/detail/client_exchange.hpp>
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
    /// The `y` of the response's HTTP/1.y.
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

} // namespace coring::http
