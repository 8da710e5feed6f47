#pragma once

#include <coring/net/address.hpp>
#include <coring/task/task.hpp>
#include <coring/thread/to_thread.hpp>

#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace coring {

namespace detail {

/// getaddrinfo's EAI_* codes as an error category, so that resolution failures are std::system_error like the rest.
class resolver_category_t : public std::error_category {
public:
    [[nodiscard]] const char* name() const noexcept override { return "getaddrinfo"; }
    [[nodiscard]] std::string message(int code) const override { return ::gai_strerror(code); }
};

inline const std::error_category& resolver_category() noexcept {
    static const resolver_category_t category;
    return category;
}

inline std::vector<address> getaddrinfo_blocking(const std::string& host, std::uint16_t port, int family, int type) {
    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = type;
    hints.ai_flags = AI_ADDRCONFIG;
    addrinfo* list = nullptr;
    const int r = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
    if (r == EAI_SYSTEM) throw std::system_error(errno, std::system_category(), "coring: resolve " + host);
    if (r != 0) throw std::system_error(r, resolver_category(), "coring: resolve " + host);
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> owner(list, ::freeaddrinfo);
    std::vector<address> out;
    for (const addrinfo* ai = list; ai; ai = ai->ai_next) {
        address a(ai->ai_addr, static_cast<socklen_t>(ai->ai_addrlen));
        bool seen = false;
        for (const address& b : out) seen = seen || b == a;
        if (!seen) out.push_back(a);
    }
    return out;
}

} // namespace detail

/// Resolves `host` (a name, or a numeric IPv4 or IPv6 address) for `port` (asyncio's getaddrinfo), in the order
/// the system prefers. Numeric addresses need no lookup; names are resolved with getaddrinfo on the loop's worker
/// pool, so the loop keeps running. Cancelling the caller stops its wait at once (the lookup itself finishes in the
/// background). `family` narrows to AF_INET or AF_INET6; `type` to SOCK_STREAM (default) or SOCK_DGRAM. Throws
/// std::system_error ("resolve example.invalid: Name or service not known").
[[nodiscard]] inline task<std::vector<address>> resolve(std::string host, std::uint16_t port, int family = AF_UNSPEC,
                                                        int type = SOCK_STREAM) {
    std::string bare = host;
    if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') bare = bare.substr(1, bare.size() - 2);
    {
        address numeric;
        try {
            numeric = address::from(bare, port);
        } catch (const std::invalid_argument&) {}
        if (!numeric.empty() && (family == AF_UNSPEC || numeric.family() == family))
            co_return std::vector<address>{numeric};
    }
    co_return co_await to_thread(&detail::getaddrinfo_blocking, std::move(bare), port, family, type);
}

} // namespace coring
