#pragma once

#include <coring/detail/str_cat.hpp>
#include <coring/fs/detail/path_arg.hpp>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coring {

/// A socket address: IPv4, IPv6 or a Unix-domain path (asyncio's address tuples, as one value type).
///
/// Text forms, both ways: "127.0.0.1:8080", "[::1]:80", "[fe80::1%eth0]:80" (with a scope), "unix:/run/app.sock",
/// and "unix:@name" for a Linux abstract socket.
class address {
public:
    /// An empty address (family AF_UNSPEC).
    address() noexcept = default;

    /// Copies a sockaddr as the kernel filled it in (accept, recvfrom, getsockname...). Throws std::invalid_argument
    /// when `len` does not fit.
    address(const sockaddr* sa, socklen_t len) {
        if (len > sizeof(storage_)) throw std::invalid_argument("coring: address: sockaddr too long");
        std::memcpy(&storage_, sa, len);
        len_ = len;
    }

    /// Parses the text forms above. Throws std::invalid_argument naming the text when it is not an address (host
    /// names are not addresses: resolve() them).
    static address parse(std::string_view text) {
        if (text.substr(0, 5) == "unix:") return from_unix(text.substr(5), text);
        std::string_view host;
        std::string_view port;
        if (!text.empty() && text.front() == '[') {
            const auto close = text.find(']');
            if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') throw bad(text);
            host = text.substr(1, close - 1);
            port = text.substr(close + 2);
        } else {
            const auto colon = text.rfind(':');
            if (colon == std::string_view::npos) throw bad(text);
            host = text.substr(0, colon);
            port = text.substr(colon + 1);
            if (host.find(':') != std::string_view::npos) throw bad(text); // IPv6 needs brackets
        }
        const std::uint16_t p = parse_port(port, text);
        if (auto ip = from_ip(host, p)) return *ip;
        throw bad(text);
    }

    /// The address of `ip` (a numeric IPv4 or IPv6 literal, without brackets) and `port`. Throws
    /// std::invalid_argument when `ip` is not numeric.
    static address from(std::string_view ip, std::uint16_t port) {
        if (auto a = from_ip(ip, port)) return *a;
        throw std::invalid_argument(detail::str_cat("coring: address: \"", ip, "\" is not a numeric IP address"));
    }

    /// The Unix-domain address of `path` (a std::filesystem::path, std::string, std::string_view or const char*):
    /// a socket file, or "@name" for a Linux abstract socket. Throws std::invalid_argument for an empty path or one
    /// longer than sockaddr_un holds (107 bytes).
    static address from_path(detail::path_arg path) { return from_unix(path.view(), path.view()); }

    /// "127.0.0.1:8080", "[::1]:80", "unix:/path", "unix:@name"; "" for an empty address.
    [[nodiscard]] std::string to_string() const {
        char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 16];
        switch (family()) {
        case AF_INET: {
            const auto* in = reinterpret_cast<const sockaddr_in*>(&storage_);
            ::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
            return detail::str_cat(buf, ":", std::to_string(port()));
        }
        case AF_INET6: {
            const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage_);
            ::inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
            std::string scope;
            if (in6->sin6_scope_id != 0) {
                char name[IF_NAMESIZE];
                scope =
                    ::if_indextoname(in6->sin6_scope_id, name) ? std::string(name) : std::to_string(in6->sin6_scope_id);
                scope.insert(scope.begin(), '%');
            }
            return detail::str_cat("[", buf, scope, "]:", std::to_string(port()));
        }
        case AF_UNIX: {
            const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
            const std::size_t n = len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
            if (n == 0) return "unix:"; // an unnamed socket (the client end of a connection)
            if (un->sun_path[0] == '\0') return detail::str_cat("unix:@", std::string_view(un->sun_path + 1, n - 1));
            return detail::str_cat("unix:", std::string_view(un->sun_path, ::strnlen(un->sun_path, n)));
        }
        default:
            return "";
        }
    }

    /// The port (host byte order); 0 for Unix-domain and empty addresses.
    [[nodiscard]] std::uint16_t port() const noexcept {
        if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
        if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
        return 0;
    }
    /// The same address with another port (IPv4, IPv6).
    [[nodiscard]] address with_port(std::uint16_t p) const noexcept {
        address a = *this;
        if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&a.storage_)->sin_port = htons(p);
        if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&a.storage_)->sin6_port = htons(p);
        return a;
    }

    /// AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC.
    [[nodiscard]] int family() const noexcept { return len_ ? storage_.ss_family : AF_UNSPEC; }
    /// family() is AF_INET.
    [[nodiscard]] bool is_ipv4() const noexcept { return family() == AF_INET; }
    /// family() is AF_INET6, the IPv4-mapped peers of a [::] listener ("[::ffff:1.2.3.4]:80") included.
    [[nodiscard]] bool is_ipv6() const noexcept { return family() == AF_INET6; }
    /// family() is AF_UNIX: a socket file, an abstract name or an unnamed socket.
    [[nodiscard]] bool is_unix() const noexcept { return family() == AF_UNIX; }
    /// No address: default-constructed or resized to 0; family() is then AF_UNSPEC.
    [[nodiscard]] bool empty() const noexcept { return len_ == 0; }

    /// The sockaddr, for system calls.
    [[nodiscard]] const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
    /// The sockaddr, for the kernel to write into (capacity() bytes); then resize() to the length it reports.
    [[nodiscard]] sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
    /// The sockaddr's length in bytes, as system calls take it; 0 when empty.
    [[nodiscard]] socklen_t size() const noexcept { return len_; }
    /// Room for the kernel to write into (recvfrom, accept); then set its length with resize().
    [[nodiscard]] static constexpr socklen_t capacity() noexcept { return sizeof(sockaddr_storage); }
    /// Sets the length to the one the kernel reported (capped at capacity()).
    void resize(socklen_t len) noexcept { len_ = len <= capacity() ? len : capacity(); }

    /// Same length and same bytes: an IPv4 address never equals its IPv4-mapped IPv6 form.
    friend bool operator==(const address& a, const address& b) noexcept {
        return a.len_ == b.len_ && std::memcmp(&a.storage_, &b.storage_, a.len_) == 0;
    }

private:
    static std::invalid_argument bad(std::string_view text) {
        return std::invalid_argument(detail::str_cat("coring: address: cannot parse \"", text,
                                                     "\" (expected 1.2.3.4:port, [v6]:port or unix:/path)"));
    }
    static std::uint16_t parse_port(std::string_view port, std::string_view text) {
        unsigned v = 0;
        const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
        if (port.empty() || ec != std::errc() || end != port.data() + port.size() || v > 65535) throw bad(text);
        return static_cast<std::uint16_t>(v);
    }
    static std::optional<address> from_ip(std::string_view ip, std::uint16_t port);
    /// A Unix-domain address; `text` is what the error message quotes.
    static address from_unix(std::string_view path, std::string_view text) {
        sockaddr_un un{};
        un.sun_family = AF_UNIX;
        if (path.empty() || path.size() >= sizeof(un.sun_path))
            throw std::invalid_argument(detail::str_cat("coring: address: bad Unix socket path in \"", text, "\""));
        std::memcpy(un.sun_path, path.data(), path.size());
        socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
        if (path[0] == '@') un.sun_path[0] = '\0'; // abstract: no terminating NUL, length counts exactly
        else ++len;                                // a filesystem path includes its NUL
        return address(reinterpret_cast<const sockaddr*>(&un), len);
    }

    sockaddr_storage storage_{};
    socklen_t len_ = 0;
};

inline std::optional<address> address::from_ip(std::string_view ip, std::uint16_t port) {
    std::string host(ip);
    sockaddr_in in{};
    if (::inet_pton(AF_INET, host.c_str(), &in.sin_addr) == 1) {
        in.sin_family = AF_INET;
        in.sin_port = htons(port);
        return address(reinterpret_cast<const sockaddr*>(&in), sizeof in);
    }
    std::uint32_t scope = 0;
    if (const auto pct = host.find('%'); pct != std::string::npos) {
        const std::string zone = host.substr(pct + 1);
        host.resize(pct);
        scope = ::if_nametoindex(zone.c_str());
        if (scope == 0) {
            const auto [end, ec] = std::from_chars(zone.data(), zone.data() + zone.size(), scope);
            if (ec != std::errc() || end != zone.data() + zone.size()) return std::nullopt;
        }
    }
    sockaddr_in6 in6{};
    if (::inet_pton(AF_INET6, host.c_str(), &in6.sin6_addr) == 1) {
        in6.sin6_family = AF_INET6;
        in6.sin6_port = htons(port);
        in6.sin6_scope_id = scope;
        return address(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
    }
    return std::nullopt;
}

} // namespace coring
