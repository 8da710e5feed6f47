#pragma once

// A whole HTTP response, as a client request returns it.

#include <coring/detail/inner_awaiter.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/http/client_options.hpp>
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

/// A complete response (aiohttp's ClientResponse after read()).
struct client_response {
    int status = 0;        ///< status code of the final response (after redirects)
    int version_minor = 1; ///< the `y` of the response's HTTP/1.y
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

} // namespace coring::http
