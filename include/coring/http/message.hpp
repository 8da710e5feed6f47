#pragma once

#include <coring/config.hpp>
#include <coring/http/json.hpp>
#include <coring/task/task.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coring::http {

namespace detail {
struct ws_upgrade; // server.hpp: a WebSocket route's handler and limits, for one connection
} // namespace detail

namespace detail {

inline char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

/// ASCII case-insensitive equality (header names, tokens).
inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

/// Whether a comma-separated header value lists `token` (case-insensitively): "keep-alive, Upgrade" has "upgrade".
inline bool has_token(std::string_view list, std::string_view token) noexcept {
    while (!list.empty()) {
        const std::size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (iequals(item, token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

/// RFC 9110 tchar: what a method or a header name may consist of (a table: every response header is checked).
inline bool token_char(char c) noexcept {
    static constexpr auto table = [] {
        std::array<bool, 256> t{};
        for (int ch = 'a'; ch <= 'z'; ++ch) t[static_cast<std::size_t>(ch)] = true;
        for (int ch = 'A'; ch <= 'Z'; ++ch) t[static_cast<std::size_t>(ch)] = true;
        for (int ch = '0'; ch <= '9'; ++ch) t[static_cast<std::size_t>(ch)] = true;
        for (const char ch : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(ch)] = true;
        return t;
    }();
    return table[static_cast<unsigned char>(c)];
}
/// A non-empty run of tchar: a valid method or header name.
inline bool is_token(std::string_view s) noexcept { return !s.empty() && std::all_of(s.begin(), s.end(), token_char); }

/// Appends `v` in decimal (status codes, Content-Length, chunk sizes), without a temporary string.
inline void append_number(std::string& out, std::size_t v) {
    char digits[24];
    const auto r = std::to_chars(digits, digits + sizeof digits, v);
    out.append(digits, r.ptr);
}

/// Appends "name: value\r\n".
inline void append_field(std::string& out, std::string_view name, std::string_view value) {
    out += name;
    out += std::string_view(": ", 2);
    out += value;
    out += std::string_view("\r\n", 2);
}

/// Whether a header name or value could split a message (CR, LF, NUL), which a response must never let through.
inline bool unsafe_field(std::string_view s) noexcept {
    for (const char c : s) // a plain loop: find_first_of would make a call per character
        if (c == '\r' || c == '\n' || c == '\0') return true;
    return false;
}

} // namespace detail

/// One header field.
struct field {
    std::string name;  ///< the field's name, as written (compare it case-insensitively)
    std::string value; ///< the field's value
};

namespace detail {

/// A per-thread stock of header vectors whose strings have storage already: every response a handler builds
/// takes one and gives it back when destroyed, so that "Content-Type: application/json" costs no allocation per
/// request. Small (32 vectors of at most 8 fields); off under AddressSanitizer, which it would blind.
class field_stock {
public:
    static std::vector<field> take() noexcept {
        if (field_stock* s = get(); enabled && s && s->count_ > 0) return std::move(s->items_[--s->count_]);
        return {};
    }
    static void give(std::vector<field>&& v) noexcept {
        if (!enabled || v.capacity() == 0 || v.size() > 8) return;
        if (field_stock* s = get(); s && s->count_ < s->items_.size()) s->items_[s->count_++] = std::move(v);
    }

private:
    static constexpr bool enabled = !CORING_ASAN;
    static field_stock* get() noexcept {
        static thread_local field_stock stock;
        static thread_local bool alive = true; // false once this thread's stock is gone (thread exit)
        struct guard {
            ~guard() { alive = false; }
        };
        static thread_local guard g;
        (void)g;
        return alive ? &stock : nullptr;
    }
    std::array<std::vector<field>, 32> items_;
    std::size_t count_ = 0;
};

} // namespace detail

/// Header fields in arrival order; names compare case-insensitively, and a name may repeat.
///
/// Reused from request to request on a connection: clear() keeps the strings' storage, so a keep-alive connection
/// stops allocating for headers after its first requests.
class headers {
public:
    headers() noexcept : fields_(detail::field_stock::take()) {}
    /// Copies `o`'s fields.
    headers(const headers& o) : fields_(o.begin(), o.end()), count_(o.count_) {}
    /// Replaces the fields with copies of `o`'s.
    headers& operator=(const headers& o) {
        if (this != &o) {
            fields_.assign(o.begin(), o.end());
            count_ = o.count_;
        }
        return *this;
    }
    /// A moved-from set of fields is empty (and reusable).
    headers(headers&& o) noexcept : fields_(std::move(o.fields_)), count_(std::exchange(o.count_, 0)) {
        o.fields_.clear();
    }
    /// Takes `o`'s fields; `o` is left empty (and reusable).
    headers& operator=(headers&& o) noexcept {
        if (this != &o) {
            fields_ = std::move(o.fields_);
            count_ = std::exchange(o.count_, 0);
            o.fields_.clear();
        }
        return *this;
    }
    ~headers() { detail::field_stock::give(std::move(fields_)); }

    /// Adds a field (after any with the same name).
    void add(std::string_view name, std::string_view value) {
        if (count_ < fields_.size()) {
            fields_[count_].name.assign(name);
            fields_[count_].value.assign(value);
        } else {
            fields_.push_back({std::string(name), std::string(value)});
        }
        ++count_;
    }
    /// Replaces every field called `name` with one.
    void set(std::string_view name, std::string_view value) {
        remove(name);
        add(name, value);
    }
    /// The value of the first field called `name`, if any.
    [[nodiscard]] std::optional<std::string_view> get(std::string_view name) const noexcept {
        for (std::size_t i = 0; i < count_; ++i)
            if (detail::iequals(fields_[i].name, name)) return std::string_view(fields_[i].value);
        return std::nullopt;
    }
    /// The value of the first field called `name`, or `fallback`.
    [[nodiscard]] std::string_view get_or(std::string_view name, std::string_view fallback) const noexcept {
        auto v = get(name);
        return v ? *v : fallback;
    }
    /// Every value of the fields called `name`, in order.
    [[nodiscard]] std::vector<std::string_view> get_all(std::string_view name) const {
        std::vector<std::string_view> out;
        for (std::size_t i = 0; i < count_; ++i)
            if (detail::iequals(fields_[i].name, name)) out.emplace_back(fields_[i].value);
        return out;
    }
    /// Whether a field called `name` is present.
    [[nodiscard]] bool contains(std::string_view name) const noexcept { return get(name).has_value(); }
    /// Removes every field called `name`; returns how many.
    std::size_t remove(std::string_view name) {
        std::size_t kept = 0;
        for (std::size_t i = 0; i < count_; ++i) {
            if (detail::iequals(fields_[i].name, name)) continue;
            if (kept != i) std::swap(fields_[kept], fields_[i]);
            ++kept;
        }
        const std::size_t removed = count_ - kept;
        count_ = kept;
        return removed;
    }
    /// Removes every field, keeping the strings' storage for the next ones.
    void clear() noexcept { count_ = 0; }
    /// The number of fields (a repeated name counts once per field).
    [[nodiscard]] std::size_t size() const noexcept { return count_; }
    /// Whether there are no fields.
    [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
    /// The first field (the fields iterate in arrival order); adding a field may invalidate it.
    [[nodiscard]] const field* begin() const noexcept { return fields_.data(); }
    /// Past the last field.
    [[nodiscard]] const field* end() const noexcept { return fields_.data() + count_; }
    /// Field `i` in arrival order; `i` must be below size() (not checked).
    [[nodiscard]] const field& operator[](std::size_t i) const noexcept { return fields_[i]; }

    /// The last field, for parsers that receive a value in pieces.
    field& back() noexcept { return fields_[count_ - 1]; }
    /// Field `i`, for parsers that finish values in place.
    field& edit(std::size_t i) noexcept { return fields_[i]; }

private:
    std::vector<field> fields_;
    std::size_t count_ = 0;
};

/// The standard reason phrase of a status code ("Not Found"); "Unknown" for codes without one.
inline std::string_view reason_phrase(int status) noexcept {
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/// An HTTP request as a server handler sees it.
struct request {
    std::string method;    ///< "GET", "POST", ...
    std::string target;    ///< the request target as sent: "/search?q=x"
    int version_minor = 1; ///< `HTTP/1.<version_minor>`
    http::headers headers; ///< in arrival order
    std::string body;      ///< the whole body (Content-Length or chunked), limited by the server's options
    /// The trailer fields after a chunked body, kept apart from `headers` (RFC 9110 section 6.5: a recipient must
    /// not merge them, since a trailer can claim anything a header can; a proxy's header rules never saw them).
    http::headers trailers;
    std::vector<field> params{}; ///< path parameters captured by the router ({name} segments)

    /// The path part of the target ("/search").
    [[nodiscard]] std::string_view path() const noexcept {
        const std::string_view t = target;
        return t.substr(0, t.find('?'));
    }
    /// The query part of the target without '?' ("q=x"), empty when none.
    [[nodiscard]] std::string_view query() const noexcept {
        const std::string_view t = target;
        const std::size_t q = t.find('?');
        return q == std::string_view::npos ? std::string_view() : t.substr(q + 1);
    }
    /// A path parameter captured by the router ("/users/{id}"): its percent-decoded value. Throws std::out_of_range
    /// when the route has no such parameter.
    [[nodiscard]] const std::string& param(std::string_view name) const {
        for (const field& f : params)
            if (f.name == name) return f.value;
        throw std::out_of_range("coring: http: the route has no parameter \"" + std::string(name) + "\"");
    }
    /// The first value of a query parameter, percent-decoded ('+' is a space), if present.
    [[nodiscard]] std::optional<std::string> query_param(std::string_view name) const;
#if CORING_HTTP_HAS_JSON
    /// The body parsed as JSON (aiohttp's `await request.json()`), whatever the Content-Type says. Throws
    /// request_json_error (reason and byte position) when it is not valid JSON, an empty body included: a handler
    /// that lets it escape answers 400 Bad Request. Only with nlohmann/json (see <coring/http/json.hpp>);
    /// `json<nlohmann::ordered_json>()` keeps the order of object keys.
    template <class Json = nlohmann::json>
        requires detail::nlohmann_json_type<Json>
    [[nodiscard]] Json json() const { return detail::json_parse_request<Json>(body, method, target); }
#endif
};

class body_writer;

/// An HTTP response: what a server handler returns, with helpers for the usual kinds.
struct response {
    int status = 200;      ///< status code
    http::headers headers; ///< besides those the server adds (Content-Length, Date, Connection)
    std::string body;      ///< sent with Content-Length, unless `stream` is set
    /// When set, the body is produced by this coroutine and sent chunked (Transfer-Encoding: chunked), each
    /// body_writer::write one chunk: for large or open-ended bodies.
    std::function<task<>(body_writer&)> stream{};
    /// Set by server::websocket routes on their 101 answer: the connection is handed to the WebSocket handler.
    std::shared_ptr<const detail::ws_upgrade> upgrade{};

    response() = default;
    /// A response with a status and a body (no Content-Type).
    response(int status_code, std::string body_text) : status(status_code), body(std::move(body_text)) {}

    /// text/plain; charset=utf-8.
    static response text(std::string body_text, int status_code = 200) {
        response r(status_code, std::move(body_text));
        r.headers.add("Content-Type", "text/plain; charset=utf-8");
        return r;
    }
    /// application/json, the body sent as given: text that is JSON already (`response::json(R"({"ok": true})")`).
    static response json(std::string body_text, int status_code = 200) {
        response r(status_code, std::move(body_text));
        r.headers.add("Content-Type", "application/json");
        return r;
    }
    /// application/json from text that is JSON already (a string literal is text, never a JSON string value).
    static response json(const char* body_text, int status_code = 200) {
        return json(body_text ? std::string(body_text) : std::string(), status_code); // null: `json({})`, empty
    }
    /// application/json from text that is JSON already.
    static response json(std::string_view body_text, int status_code = 200) {
        return json(std::string(body_text), status_code);
    }
#if CORING_HTTP_HAS_JSON
    /// application/json from a value, serialized compactly (`response::json({{"ok", true}})`, UTF-8 as it is). Throws
    /// nlohmann::json::type_error (so the client gets a 500) when a string in it is not valid UTF-8. Only with
    /// nlohmann/json (see <coring/http/json.hpp>).
    static response json(const nlohmann::json& value, int status_code = 200) { return json(value.dump(), status_code); }
    /// application/json from another nlohmann::basic_json (nlohmann::ordered_json keeps its keys' order).
    template <class Json>
        requires detail::other_nlohmann_json_type<Json>
    static response json(const Json& value, int status_code = 200) { return json(value.dump(), status_code); }
#endif
    /// text/html; charset=utf-8.
    static response html(std::string body_text, int status_code = 200) {
        response r(status_code, std::move(body_text));
        r.headers.add("Content-Type", "text/html; charset=utf-8");
        return r;
    }
    /// A redirect to `location` (302 by default; 301, 303, 307 and 308 are the others).
    static response redirect(std::string_view location, int status_code = 302) {
        response r(status_code, {});
        r.headers.add("Location", location);
        return r;
    }
    /// A chunked response whose body `producer` writes piece by piece.
    static response streamed(std::function<task<>(body_writer&)> producer, std::string_view content_type = {}) {
        response r;
        r.stream = std::move(producer);
        if (!content_type.empty()) r.headers.add("Content-Type", content_type);
        return r;
    }
};

namespace detail {

inline int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

} // namespace detail

/// Decodes `%XX` escapes (and '+' as a space when `plus_is_space`, as in query strings); a malformed escape is kept
/// as it is.
inline std::string percent_decode(std::string_view s, bool plus_is_space = false) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '%' && i + 2 < s.size()) {
            const int hi = detail::hex_value(s[i + 1]), lo = detail::hex_value(s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out += (plus_is_space && c == '+') ? ' ' : c;
    }
    return out;
}

inline std::optional<std::string> request::query_param(std::string_view name) const {
    std::string_view q = query();
    while (!q.empty()) {
        const std::size_t amp = q.find('&');
        const std::string_view pair = q.substr(0, amp);
        const std::size_t eq = pair.find('=');
        const std::string key = percent_decode(pair.substr(0, eq), true);
        if (key == name)
            return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
        if (amp == std::string_view::npos) break;
        q.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

} // namespace coring::http
