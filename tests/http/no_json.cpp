// Compiled, never run (an object library of tests/CMakeLists.txt, kept out of coring_tests, whose classes it would
// contradict): with CORING_NO_JSON, <coring/http.hpp> compiles, never includes nlohmann/json, and has no JSON calls,
// while the rest of the HTTP API (response::json from text included) is there.
#ifndef CORING_NO_JSON
#define CORING_NO_JSON
#endif

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <string>
#include <type_traits>

#if CORING_HTTP_HAS_JSON
#error "CORING_NO_JSON is defined, yet coring::http has its JSON calls"
#endif
#ifdef NLOHMANN_JSON_VERSION_MAJOR
#error "CORING_NO_JSON is defined, yet <nlohmann/json.hpp> was included"
#endif

namespace {

/// A member json() (dependent, so that its absence is a false requirement, not an error).
template <class T>
concept has_json = requires(T& t) {
    t.json();
};

static_assert(!has_json<coring::http::request>);
static_assert(!has_json<coring::http::client_response>);
static_assert(!has_json<coring::http::client_stream>);
// The error types exist either way (the server catches request_json_error).
static_assert(std::is_base_of_v<coring::http::json_error, coring::http::request_json_error>);

[[maybe_unused]] coring::task<std::string> use_the_rest(coring::http::server& app, coring::http::client& c,
                                                        std::string url) {
    app.get("/", [](coring::http::request& r) -> coring::task<coring::http::response> {
        co_return coring::http::response::json("{\"path\": \"" + std::string(r.path()) + "\"}");
    });
    app.get("/literal", [](coring::http::request&) -> coring::task<coring::http::response> {
        co_return coring::http::response::json(R"({"ok": true})");
    });
    coring::task<coring::http::client_response> getting = c.get(std::move(url));
    const coring::http::client_response r = co_await std::move(getting);
    co_return r.body;
}

} // namespace
