#pragma once

// What an HTTP client request throws besides std::system_error and coring::timeout_error.

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
    /// "coring: http: GET https://h/x: ...": the method, the URL and which timeout ran out.
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

} // namespace coring::http
