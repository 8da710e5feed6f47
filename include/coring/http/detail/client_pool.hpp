#pragma once

// The HTTP client's pool: idle connections per origin, and the permits that bound how many are open.

#include <coring/detail/inner_awaiter.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/http/detail/client_connection.hpp>
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

} // namespace detail

} // namespace coring::http
