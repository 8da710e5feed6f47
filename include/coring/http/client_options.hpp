#pragma once

// How an HTTP client and its requests are configured: timeouts, limits, pool sizes, default headers, TLS.

#include <coring/detail/inner_awaiter.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/http/client_errors.hpp>
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

} // namespace coring::http
