#pragma once

// JSON bodies through nlohmann/json (https://github.com/nlohmann/json; Debian's nlohmann-json3-dev), when it is
// there: client_response::json(), client_stream::json(), request::json() and response::json(const nlohmann::json&).
//
// Detection needs no build system: the JSON calls exist when <nlohmann/json.hpp> can be included, unless
// CORING_NO_JSON is defined (then they are absent and nlohmann/json is never included, which also saves its compile
// time). CORING_HTTP_HAS_JSON says which (1 or 0). Define CORING_NO_JSON the same way in every translation unit of a
// program (on the command line, or with the CMake option CORING_JSON=OFF), since it changes class definitions.
//
// The error types below exist either way, so that code catching them (the server does) does not depend on it.

#include <coring/detail/str_cat.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#if !defined(CORING_NO_JSON) && __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define CORING_HTTP_HAS_JSON 1
#else
#define CORING_HTTP_HAS_JSON 0
#endif

namespace coring::http {

/// A body that is not valid JSON (client_response::json(), client_stream::json()): what() names the URL, the status
/// and Content-Type of the response, and nlohmann/json's reason with its position:
/// "coring: http: http://h/x: the body of the 200 response (Content-Type: text/html) is not valid JSON: parse error at
/// line 1, column 1: syntax error while parsing value - invalid literal; last read: '<'".
class json_error : public std::runtime_error {
public:
    /// `what` is the whole message; `url` where the body came from; `reason` nlohmann/json's; `byte` the position.
    json_error(const std::string& what, std::string url, std::string reason, std::size_t byte)
        : std::runtime_error(what), url_(std::move(url)), reason_(std::move(reason)), byte_(byte) {}
    /// The URL whose body failed to parse (for a request_json_error, the request's target).
    [[nodiscard]] const std::string& url() const noexcept { return url_; }
    /// nlohmann/json's message without its "[json.exception.parse_error.N] " prefix (at most about 300 bytes).
    [[nodiscard]] const std::string& reason() const noexcept { return reason_; }
    /// The position in the body where parsing stopped (nlohmann's parse_error::byte: 1 is the first byte).
    [[nodiscard]] std::size_t byte() const noexcept { return byte_; }

private:
    std::string url_;
    std::string reason_;
    std::size_t byte_;
};

/// A request body that is not valid JSON (request::json()). A handler that lets it escape gets 400 Bad Request with
/// nlohmann/json's reason, not 500: the client sent it, the server did nothing wrong (server_options::on_handler_error
/// is not called). A json_error from anything else (a client_response's body) is still a 500.
class request_json_error : public json_error {
public:
    using json_error::json_error;
};

namespace detail {

/// nlohmann's parse_error message without "[json.exception.parse_error.101] ", cut to about 300 bytes (its "last
/// read" can hold a whole string token) at a UTF-8 character boundary.
inline std::string json_reason(std::string_view what) {
    if (what.starts_with("[json.exception.")) {
        if (const std::size_t end = what.find("] "); end != std::string_view::npos) what.remove_prefix(end + 2);
    }
    constexpr std::size_t limit = 300;
    if (what.size() <= limit) return std::string(what);
    std::size_t cut = limit;
    while (cut > 0 && (static_cast<unsigned char>(what[cut]) & 0xC0) == 0x80) --cut;
    return coring::detail::str_cat(what.substr(0, cut), "...");
}

#if CORING_HTTP_HAS_JSON

/// Whether `T` is a nlohmann::basic_json specialization (nlohmann::json, nlohmann::ordered_json, ...).
template <class T>
concept nlohmann_json_type = nlohmann::detail::is_basic_json<T>::value;
/// A nlohmann::basic_json other than nlohmann::json (response::json's overload for those).
template <class T>
concept other_nlohmann_json_type = nlohmann_json_type<T> && !std::is_same_v<T, nlohmann::json>;

/// Parses `text` as `Json`; a parse error is handed to `fail(reason, byte)`, which throws.
template <class Json, class Fail>
Json json_parse(std::string_view text, Fail&& fail) {
    try {
        return Json::parse(text);
    } catch (const nlohmann::detail::parse_error& e) {
        std::forward<Fail>(fail)(json_reason(e.what()), e.byte);
        throw; // not reached: fail throws
    }
}

/// The body of a response from `from` (an http::url: named only on failure), with `status` and Content-Type
/// `content_type`, as JSON; throws json_error.
template <class Json, class Url>
Json json_parse_response(std::string_view body, const Url& from, int status, std::string_view content_type) {
    return json_parse<Json>(body, [&](std::string reason, std::size_t byte) {
        std::string url = from.to_string();
        const std::string status_text = std::to_string(status);
        const std::string what = coring::detail::str_cat(
            "coring: http: ", url, ": the body of the ", status_text,
            " response (Content-Type: ", content_type.empty() ? "none" : content_type, ") is not valid JSON: ", reason);
        throw json_error(what, std::move(url), std::move(reason), byte);
    });
}

/// The body of the request `method` `target` as JSON; throws request_json_error.
template <class Json>
Json json_parse_request(std::string_view body, std::string_view method, const std::string& target) {
    return json_parse<Json>(body, [&](std::string reason, std::size_t byte) {
        const std::string what = coring::detail::str_cat("coring: http: ", method, " ", target,
                                                         ": the request body is not valid JSON: ", reason);
        throw request_json_error(what, target, std::move(reason), byte);
    });
}

#endif

} // namespace detail

} // namespace coring::http
