#pragma once

#include <coring/detail/str_cat.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coring::http {

/// An absolute http:// (or https://) URL split into what a client needs: where to connect and what to ask for.
///
/// parse() accepts `scheme://host[:port][/path][?query][#fragment]` with the scheme "http" or "https" (any case),
/// a host name, an IPv4 literal or an IPv6 literal in brackets, and an optional port (default 80 for http, 443 for
/// https). Host names are lowercased (DNS is case-insensitive, and the connection pool keys on them). The fragment is
/// dropped (it never goes to the server); "." and ".." path segments are resolved (RFC 3986 5.2.4); an empty path is
/// "/". Spaces, non-ASCII bytes and the characters ``"<>\^`{|}`` in the path and query are percent-encoded; `%` is left
/// as it is (the URL is taken as already encoded).
///
/// Rejected with std::invalid_argument naming the text: other schemes, a missing or malformed host, a port that is
/// not 1 to 65535, control characters (CR, LF, NUL, TAB, ...) anywhere, and userinfo (`user:pass@host`): credentials
/// in URLs end up in logs and Referer headers, and `http://trusted@evil/` misleads readers, so coring refuses them
/// rather than silently sending an unauthenticated request; send an Authorization header instead.
struct url {
    std::string scheme = "http"; ///< "http" or "https" (lowercase)
    std::string host;            ///< lowercase name or IP literal; an IPv6 literal without its brackets
    std::uint16_t port = 80;     ///< the port to connect to (the scheme's default when the URL has none)
    std::string target = "/";    ///< path and query as sent in the request line ("/search?q=x")

    /// Parses an absolute URL (see the struct comment). Throws std::invalid_argument naming `text`.
    [[nodiscard]] static url parse(std::string_view text);

    /// The path part of the target ("/search").
    [[nodiscard]] std::string_view path() const noexcept {
        const std::string_view t = target;
        return t.substr(0, t.find('?'));
    }
    /// The query without '?' ("q=x"); empty when there is none.
    [[nodiscard]] std::string_view query() const noexcept {
        const std::string_view t = target;
        const std::size_t q = t.find('?');
        return q == std::string_view::npos ? std::string_view() : t.substr(q + 1);
    }
    /// Whether the host is an IPv6 literal (written in brackets).
    [[nodiscard]] bool is_ipv6() const noexcept { return host.find(':') != std::string::npos; }
    /// 80 for http, 443 for https.
    [[nodiscard]] std::uint16_t default_port() const noexcept { return scheme == "https" ? 443 : 80; }
    /// The Host header's value: the host (IPv6 in brackets), with ":port" unless it is the scheme's default.
    [[nodiscard]] std::string authority() const {
        std::string a = is_ipv6() ? coring::detail::str_cat("[", host, "]") : host;
        if (port != default_port()) a += coring::detail::str_cat(":", std::to_string(port));
        return a;
    }
    /// "host:port" always, the port included: the key of the client's connection pool.
    [[nodiscard]] std::string endpoint() const {
        return coring::detail::str_cat(is_ipv6() ? "[" : "", host, is_ipv6() ? "]" : "", ":", std::to_string(port));
    }
    /// The URL as text, the default port left out: "http://example.com/a?b".
    [[nodiscard]] std::string to_string() const { return coring::detail::str_cat(scheme, "://", authority(), target); }

    /// The same scheme, host, port and target.
    friend bool operator==(const url& a, const url& b) noexcept {
        return a.scheme == b.scheme && a.host == b.host && a.port == b.port && a.target == b.target;
    }
};

/// Resolves `reference` (a Location header: absolute "http://other/x", network-path "//other/x", absolute-path
/// "/x", relative "x/../y", query-only "?q", or empty) against `base`, as RFC 3986 section 5.2 says. Throws
/// std::invalid_argument naming the reference when the result is not a valid URL (see url::parse).
[[nodiscard]] url resolve_reference(const url& base, std::string_view reference);

namespace detail {

/// The exception for a bad URL, naming it.
inline std::invalid_argument url_error(std::string_view text, std::string_view why) {
    return std::invalid_argument(coring::detail::str_cat("coring: http: bad URL \"", text, "\": ", why));
}

/// ASCII letters (the locale must not matter).
inline bool url_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
/// ASCII digits.
inline bool url_digit(char c) noexcept { return c >= '0' && c <= '9'; }
/// ASCII lowercase (the locale must not matter).
inline char url_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

/// WHATWG's trim: leading and trailing C0 controls and spaces (copy-pasted URLs often carry a newline).
inline std::string_view url_trim(std::string_view s) noexcept {
    while (!s.empty() && static_cast<unsigned char>(s.front()) <= 0x20) s.remove_prefix(1);
    while (!s.empty() && static_cast<unsigned char>(s.back()) <= 0x20) s.remove_suffix(1);
    return s;
}

/// The length of a scheme followed by ':' at the start of `s` (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )),
/// or 0 when `s` does not start with one.
inline std::size_t url_scheme_length(std::string_view s) noexcept {
    if (s.empty() || !url_alpha(s[0])) return 0;
    for (std::size_t i = 1; i < s.size(); ++i) {
        const char c = s[i];
        if (c == ':') return i;
        if (!url_alpha(c) && !url_digit(c) && c != '+' && c != '-' && c != '.') return 0;
    }
    return 0;
}

/// Appends a path or query, percent-encoding what may not appear raw in a request target; throws for control
/// characters, which could split the request line.
inline void url_append_encoded(std::string& out, std::string_view part, std::string_view whole) {
    static constexpr char hex[] = "0123456789ABCDEF";
    for (const char ch : part) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) throw url_error(whole, "control character");
        if (c == ' ' || c >= 0x80 || std::string_view("\"<>\\^`{|}").find(ch) != std::string_view::npos) {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += ch;
        }
    }
}

/// RFC 3986 5.2.4: removes "." and ".." segments ("/a/b/../c/./d" is "/a/c/d"; ".." never climbs above the root).
inline std::string remove_dot_segments(std::string_view path) {
    std::string in(path), out;
    auto drop_last = [&out] {
        const std::size_t slash = out.rfind('/');
        out.erase(slash == std::string::npos ? 0 : slash);
    };
    while (!in.empty()) {
        if (in.starts_with("../")) {
            in.erase(0, 3);
        } else if (in.starts_with("./")) {
            in.erase(0, 2);
        } else if (in.starts_with("/./")) {
            in.erase(0, 2);
        } else if (in == "/.") {
            in = "/";
        } else if (in.starts_with("/../")) {
            in.erase(0, 3);
            drop_last();
        } else if (in == "/..") {
            in = "/";
            drop_last();
        } else if (in == "." || in == "..") {
            in.clear();
        } else {
            const std::size_t next = in.find('/', 1);
            out.append(in, 0, next);
            in.erase(0, next == std::string::npos ? in.size() : next);
        }
    }
    return out;
}

/// The target for `path` (already merged) and an optional query.
inline std::string url_make_target(std::string_view path, bool has_query, std::string_view query,
                                   std::string_view whole) {
    std::string t;
    t.reserve(path.size() + query.size() + 2);
    const std::string clean = remove_dot_segments(path);
    if (clean.empty() || clean.front() != '/') t += '/';
    url_append_encoded(t, clean, whole);
    if (has_query) {
        t += '?';
        url_append_encoded(t, query, whole);
    }
    return t;
}

/// A path and query, fragment dropped.
struct url_path_query {
    std::string_view path;  ///< up to '?'
    std::string_view query; ///< after '?'
    bool has_query = false; ///< a '?' was there (even with nothing after it)
};

/// Splits "path?query#fragment" (fragment dropped).
inline url_path_query url_split_path(std::string_view rest) noexcept {
    rest = rest.substr(0, rest.find('#'));
    url_path_query pq;
    const std::size_t q = rest.find('?');
    pq.path = rest.substr(0, q);
    if (q != std::string_view::npos) {
        pq.query = rest.substr(q + 1);
        pq.has_query = true;
    }
    return pq;
}

} // namespace detail

inline url url::parse(std::string_view text) {
    const std::string_view whole = text;
    text = detail::url_trim(text);
    const std::size_t slen = detail::url_scheme_length(text);
    if (slen == 0 || text.substr(slen, 3) != "://") throw detail::url_error(whole, "expected http://host/path");
    url u;
    u.scheme.clear();
    for (std::size_t i = 0; i < slen; ++i) u.scheme += detail::url_lower(text[i]);
    if (u.scheme != "http" && u.scheme != "https")
        throw detail::url_error(whole,
                                coring::detail::str_cat("unsupported scheme \"", u.scheme, "\" (only http and https)"));
    u.port = u.default_port();
    text.remove_prefix(slen + 3);

    const std::size_t auth_end = text.find_first_of("/?#");
    const std::string_view authority = text.substr(0, auth_end);
    const std::string_view rest = auth_end == std::string_view::npos ? std::string_view() : text.substr(auth_end);
    if (authority.find('@') != std::string_view::npos)
        throw detail::url_error(whole, "credentials in URLs are not supported (send an Authorization header)");

    std::string_view host, port;
    bool has_port = false;
    if (!authority.empty() && authority.front() == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) throw detail::url_error(whole, "unterminated IPv6 literal");
        host = authority.substr(1, close - 1);
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') throw detail::url_error(whole, "unexpected text after the IPv6 literal");
            port = after.substr(1);
            has_port = true;
        }
        in6_addr a6{};
        if (host.size() >= INET6_ADDRSTRLEN || ::inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1)
            throw detail::url_error(whole, "malformed IPv6 literal");
        u.host.reserve(host.size());
        for (const char c : host) u.host += detail::url_lower(c);
    } else {
        const std::size_t colon = authority.find(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
            has_port = true;
        }
        if (host.empty()) throw detail::url_error(whole, "no host");
        for (const char c : host) {
            if (!detail::url_alpha(c) && !detail::url_digit(c) && c != '-' && c != '.' && c != '_' && c != '~')
                throw detail::url_error(whole, "invalid character in the host");
            u.host += detail::url_lower(c);
        }
    }
    if (has_port && !port.empty()) { // "http://host:/" is the default port (RFC 3986 3.2.3)
        unsigned v = 0;
        const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
        if (ec != std::errc() || end != port.data() + port.size() || v == 0 || v > 65535)
            throw detail::url_error(whole, "invalid port");
        u.port = static_cast<std::uint16_t>(v);
    }
    const detail::url_path_query pq = detail::url_split_path(rest);
    u.target = detail::url_make_target(pq.path, pq.has_query, pq.query, whole);
    return u;
}

inline url resolve_reference(const url& base, std::string_view reference) {
    const std::string_view whole = reference;
    reference = detail::url_trim(reference);
    if (detail::url_scheme_length(reference) > 0) return url::parse(reference);
    if (reference.starts_with("//")) return url::parse(coring::detail::str_cat(base.scheme, ":", reference));
    const detail::url_path_query pq = detail::url_split_path(reference);
    url u = base;
    if (pq.path.empty()) {
        // "?q" replaces the query, "" or "#f" keeps the whole target.
        if (pq.has_query) u.target = detail::url_make_target(base.path(), true, pq.query, whole);
    } else if (pq.path.front() == '/') {
        u.target = detail::url_make_target(pq.path, pq.has_query, pq.query, whole);
    } else {
        const std::string_view bp = base.path();
        const std::string merged = coring::detail::str_cat(bp.substr(0, bp.rfind('/') + 1), pq.path);
        u.target = detail::url_make_target(merged, pq.has_query, pq.query, whole);
    }
    return u;
}

} // namespace coring::http
