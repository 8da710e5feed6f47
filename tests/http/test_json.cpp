// JSON bodies through nlohmann/json: client_response::json(), client_stream::json(), request::json() and
// response::json(const nlohmann::json&), against coring's own server; parse errors name the URL (client) or become a
// 400 (server). Without nlohmann/json (or with CORING_NO_JSON) this file checks that the calls are absent instead;
// tests/http/no_json.cpp checks that in every build.

#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <exception>
#include <string>
#include <utility>

namespace test_json {

#if CORING_HTTP_HAS_JSON

using namespace std::chrono_literals;
using coring::task;
using coring::http::client;
using coring::http::client_response;
using coring::http::client_stream;
using coring::http::request;
using coring::http::response;
using nlohmann::json;

namespace {

/// Text with two-, three- and four-byte UTF-8 sequences, a quote, a backslash and a control character.
const std::string unicode_text = "Gr\xc3\xbc\xc3\x9f"
                                 "e, \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8c\x8d \"q\" \\ \t end";

/// An array of numbers whose compact serialization is at least 1 MiB.
json big_array() {
    json a = json::array();
    for (int i = 0; a.size() < 200'000; ++i) a.push_back(1'000'000 + i); // "1000000," is 8 bytes
    return a;
}

/// How many handlers threw something that reached server_options::on_handler_error.
struct reports {
    int count = 0;
};

void add_routes(coring::http::server& app) {
    app.get("/data", [](request&) -> task<response> {
        json value = {{"city", "Oslo"}, {"temps", {1.5, -3, 0}}, {"ok", true}, {"none", nullptr}};
        co_return response::json(value);
    });
    app.get("/created", [](request&) -> task<response> {
        json value = {{"id", 7}};
        co_return response::json(value, 201);
    });
    app.get("/ordered", [](request&) -> task<response> {
        nlohmann::ordered_json value = {{"z", 1}, {"a", 2}};
        co_return response::json(value);
    });
    app.get("/text-literal", [](request&) -> task<response> { co_return response::json(R"({"pre": "serialized"})"); });
    app.get("/bad", [](request&) -> task<response> { co_return response::json("{\"a\": 1, oops}"); });
    app.get("/empty", [](request&) -> task<response> { co_return response::json(std::string()); });
    app.get("/html", [](request&) -> task<response> { co_return response::html("<html>502</html>", 502); });
    app.get("/plain", [](request&) -> task<response> { co_return response::text("[1, 2, 3]"); });
    app.get("/unicode", [](request&) -> task<response> {
        json value = {{"text", unicode_text}, {unicode_text, 1}};
        co_return response::json(value);
    });
    app.get("/big", [](request&) -> task<response> {
        json value = big_array();
        co_return response::json(value);
    });
    app.post("/echo", [](request& r) -> task<response> {
        json value = r.json();
        co_return response::json(value);
    });
    app.post("/sum", [](request& r) -> task<response> {
        const json value = r.json();
        json out = {{"sum", value.at("a").get<int>() + value.at("b").get<int>()}};
        co_return response::json(out);
    });
    // A json_error that is not about the request (an upstream's body): still the handler's failure, a 500.
    app.get("/upstream", [](request&) -> task<response> {
        client_response upstream;
        upstream.status = 200;
        upstream.body = "not json";
        upstream.url = coring::http::url::parse("http://upstream.invalid/x");
        json value = upstream.json();
        co_return response::json(value);
    });
}

/// Runs `body(client, base URL)` against a coring server with the routes above, then checks that every descriptor
/// was closed.
template <class Body>
void with_server(Body body, reports* seen = nullptr) {
    const int fds = coring_test::open_fds();
    {
        coring::http::server_options opts;
        opts.max_body = 4 << 20;
        opts.on_handler_error = [seen](const request&, std::exception_ptr) {
            if (seen) ++seen->count;
        };
        coring::http::server app(std::move(opts));
        add_routes(app);
        client c;
        coring::run([](coring::http::server& app, client& c, Body& body) -> task<> {
            auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
            auto serving = coring::spawn(app.serve(l));
            const std::string base = "http://127.0.0.1:" + std::to_string(l.local_address().port());
            std::exception_ptr failed;
            try {
                task<> running = body(c, base);
                co_await std::move(running);
            } catch (...) {
                failed = std::current_exception();
            }
            co_await c.close();
            app.shutdown(200ms);
            co_await serving;
            if (failed) std::rethrow_exception(failed);
        }(app, c, body));
    }
    CHECK(coring_test::open_fds() == fds);
}

task<client_response> get(client& c, const std::string& base, const char* path) {
    task<client_response> t = c.get(base + path);
    client_response r = co_await std::move(t);
    co_return r;
}

task<client_response> post_json(client& c, const std::string& base, const char* path, std::string body) {
    task<client_response> t = c.post(base + path, std::move(body), "application/json");
    client_response r = co_await std::move(t);
    co_return r;
}

/// What json() threw on `r`: the json_error's parts, or kind "none".
struct caught_json {
    std::string kind = "none";
    std::string what;
    std::string url;
    std::string reason;
    std::size_t byte = 0;
};

caught_json json_failure(const client_response& r) {
    caught_json c;
    try {
        (void)r.json();
    } catch (const coring::http::request_json_error& e) {
        c = {"request_json_error", e.what(), e.url(), e.reason(), e.byte()};
    } catch (const coring::http::json_error& e) {
        c = {"json_error", e.what(), e.url(), e.reason(), e.byte()};
    }
    return c;
}

} // namespace

TEST_CASE("http json - client json() of a response::json(nlohmann::json) built by the server", "[http][json]") {
    with_server([](client& c, std::string base) -> task<> {
        client_response r = co_await get(c, base, "/data");
        CHECK(r.status == 200);
        CHECK(r.headers.get_or("Content-Type", "") == "application/json");
        CHECK(r.body == R"({"city":"Oslo","none":null,"ok":true,"temps":[1.5,-3,0]})");
        const json j = r.json();
        CHECK(j.at("city") == "Oslo");
        CHECK(j.at("temps").size() == 3);
        CHECK(j.at("temps")[0].get<double>() == 1.5);
        CHECK(j.at("ok").get<bool>());
        CHECK(j.at("none").is_null());

        r = co_await get(c, base, "/created");
        CHECK(r.status == 201);
        CHECK(r.json() == json{{"id", 7}});

        // ordered_json keeps the server's key order, both ways.
        r = co_await get(c, base, "/ordered");
        CHECK(r.body == R"({"z":1,"a":2})");
        const auto ordered = r.json<nlohmann::ordered_json>();
        CHECK(ordered.begin().key() == "z");

        // A string literal is pre-serialized text, never a JSON string value.
        r = co_await get(c, base, "/text-literal");
        CHECK(r.body == R"({"pre": "serialized"})");
        CHECK(r.json().at("pre") == "serialized");

        // The Content-Type is not checked: a text/plain body that is JSON parses.
        r = co_await get(c, base, "/plain");
        CHECK(r.headers.get_or("Content-Type", "") == "text/plain; charset=utf-8");
        CHECK(r.json() == json::array({1, 2, 3}));
    });
}

TEST_CASE("http json - a body that is not JSON: json_error names the URL, status, Content-Type and byte",
          "[http][json]") {
    with_server([](client& c, std::string base) -> task<> {
        client_response r = co_await get(c, base, "/bad");
        CHECK(r.status == 200);
        caught_json e = json_failure(r);
        CHECK(e.kind == "json_error");
        CHECK(e.url == base + "/bad");
        CHECK(e.byte == 10); // "{"a": 1, o": the 'o' where a key's quote should be
        CHECK_THAT(e.what, Catch::StartsWith("coring: http: " + base +
                                             "/bad: the body of the 200 response "
                                             "(Content-Type: application/json) is not "
                                             "valid JSON: parse error at line 1, column 10"));
        CHECK_THAT(e.reason, Catch::StartsWith("parse error at line 1, column 10: syntax error"));
        CHECK_THAT(e.reason, !Catch::Contains("[json.exception"));

        // An HTML error page: the message says what came instead.
        r = co_await get(c, base, "/html");
        e = json_failure(r);
        CHECK(e.kind == "json_error");
        CHECK_THAT(e.what, Catch::Contains(base + "/html: the body of the 502 response (Content-Type: text/html"));

        // An empty body is not JSON either.
        r = co_await get(c, base, "/empty");
        e = json_failure(r);
        CHECK(e.kind == "json_error");
        CHECK_THAT(e.reason, Catch::Contains("unexpected end of input"));

        // The connection stayed in step throughout.
        CHECK(c.connections_opened() == 1);
    });
}

TEST_CASE("http json - client_stream json() reads the rest of the body", "[http][json]") {
    with_server([](client& c, std::string base) -> task<> {
        task<client_stream> opening = c.open("GET", base + "/data");
        client_stream st = co_await std::move(opening);
        CHECK(st.status() == 200);
        task<json> parsing = st.json();
        const json j = co_await std::move(parsing);
        CHECK(j.at("city") == "Oslo");
        CHECK(st.done());

        opening = c.open("GET", base + "/big");
        st = co_await std::move(opening);
        char first[1];
        task<std::size_t> reading = st.read(std::span<char>(first));
        const std::size_t n = co_await std::move(reading);
        CHECK(n == 1);
        CHECK(first[0] == '[');
        // What is left is not JSON on its own ("1000000,1000001,...]").
        std::string what;
        try {
            task<json> rest = st.json();
            (void)co_await std::move(rest);
        } catch (const coring::http::json_error& e) {
            what = e.what();
        }
        CHECK_THAT(what, Catch::StartsWith("coring: http: " + base + "/big: the body of the 200 response"));

        opening = c.open("GET", base + "/bad");
        st = co_await std::move(opening);
        std::string url;
        try {
            task<json> bad = st.json();
            (void)co_await std::move(bad);
        } catch (const coring::http::json_error& e) {
            url = e.url();
        }
        CHECK(url == base + "/bad");
    });
}

TEST_CASE("http json - request json() echo, and a request that is not JSON is a 400", "[http][json]") {
    reports seen;
    with_server(
        [](client& c, std::string base) -> task<> {
            client_response r = co_await post_json(c, base, "/echo", R"({"b": [1, 2, {"c": null}], "a": "x"})");
            CHECK(r.status == 200);
            CHECK(r.headers.get_or("Content-Type", "") == "application/json");
            CHECK(r.body == R"({"a":"x","b":[1,2,{"c":null}]})");

            r = co_await post_json(c, base, "/sum", R"({"a": 2, "b": 40})");
            CHECK(r.json().at("sum") == 42);

            // Not JSON: 400 with nlohmann's reason, on the same keep-alive connection.
            r = co_await post_json(c, base, "/echo", "{\"a\": tru}");
            CHECK(r.status == 400);
            CHECK(r.headers.get_or("Content-Type", "") == "text/plain; charset=utf-8");
            CHECK_THAT(r.body, Catch::StartsWith("Bad Request: parse error at line 1, column 10: syntax error"));
            CHECK(r.body.size() < 400);
            CHECK(r.headers.get_or("Connection", "") != "close");

            // No body at all, and a truncated one.
            r = co_await post_json(c, base, "/echo", "");
            CHECK(r.status == 400);
            CHECK_THAT(r.body, Catch::Contains("unexpected end of input"));
            r = co_await post_json(c, base, "/echo", "[1, 2");
            CHECK(r.status == 400);

            // A long bad string token: the reason is cut short.
            r = co_await post_json(c, base, "/echo", "[\"" + std::string(100'000, 'x'));
            CHECK(r.status == 400);
            CHECK(r.body.size() < 400);

            // Invalid UTF-8 inside a string is a parse error too.
            r = co_await post_json(c, base, "/echo", "[\"\xff\"]");
            CHECK(r.status == 400);

            // Valid JSON the handler cannot use (no "b"): the handler's failure, a 500.
            r = co_await post_json(c, base, "/sum", R"({"a": 2})");
            CHECK(r.status == 500);

            // A json_error that is not the request's (an upstream's body): a 500 as well.
            r = co_await get(c, base, "/upstream");
            CHECK(r.status == 500);

            CHECK(c.connections_opened() == 1);
        },
        &seen);
    CHECK(seen.count == 2); // the two 500s; the 400s are not handler failures
}

TEST_CASE("http json - request_json_error carries the target, reason and byte", "[http][json]") {
    request req;
    req.method = "PUT";
    req.target = "/items/3?x=1";
    req.body = "[1, 2,, 3]";
    std::string what, url, reason;
    std::size_t byte = 0;
    try {
        (void)req.json();
    } catch (const coring::http::request_json_error& e) {
        what = e.what();
        url = e.url();
        reason = e.reason();
        byte = e.byte();
    }
    CHECK_THAT(what, Catch::StartsWith("coring: http: PUT /items/3?x=1: the request body is not valid JSON: parse "
                                       "error at line 1, column 7"));
    CHECK(url == "/items/3?x=1");
    CHECK(byte == 7);
    CHECK_THAT(reason, Catch::StartsWith("parse error at line 1, column 7"));

    req.body = R"({"k": [true, 1e3]})";
    const json j = req.json();
    CHECK(j.at("k")[1].get<double>() == 1000.0);
}

TEST_CASE("http json - non-ASCII text round trip, both ways", "[http][json]") {
    with_server([](client& c, std::string base) -> task<> {
        client_response r = co_await get(c, base, "/unicode");
        CHECK(r.status == 200);
        // Serialized as UTF-8, not \u escapes; the quote, backslash and tab escaped.
        CHECK(r.body.find("\xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8c\x8d \\\"q\\\" \\\\ \\t end") != std::string::npos);
        const json j = r.json();
        CHECK(j.at("text").get<std::string>() == unicode_text);
        CHECK(j.at(unicode_text) == 1);

        // Up and back: as UTF-8, and as \u escapes (a surrogate pair for U+1F30D).
        json value = {{"text", unicode_text}};
        r = co_await post_json(c, base, "/echo", value.dump());
        CHECK(r.json().at("text").get<std::string>() == unicode_text);
        r = co_await post_json(c, base, "/echo", R"(["\u00fc\u4e16\ud83c\udf0d"])");
        CHECK(r.status == 200);
        CHECK(r.json()[0].get<std::string>() == "\xc3\xbc\xe4\xb8\x96\xf0\x9f\x8c\x8d");
    });
}

TEST_CASE("http json - a 1 MiB array, down and up", "[http][json]") {
    with_server([](client& c, std::string base) -> task<> {
        const json expected = big_array();
        client_response r = co_await get(c, base, "/big");
        CHECK(r.status == 200);
        CHECK(r.body.size() >= (1u << 20));
        const json down = r.json();
        CHECK(down.size() == expected.size());
        CHECK(down == expected);

        r = co_await post_json(c, base, "/echo", expected.dump());
        CHECK(r.status == 200);
        CHECK(r.body == expected.dump());

        task<client_stream> opening = c.open("GET", base + "/big");
        client_stream st = co_await std::move(opening);
        task<json> parsing = st.json();
        const json streamed = co_await std::move(parsing);
        CHECK(streamed == expected);
    });
}

TEST_CASE("http json - response::json overloads: text stays text, values are serialized", "[http][json]") {
    const std::string text = R"({"a":1})";
    const std::string_view view = text;
    CHECK(response::json(R"({"a":1})").body == text);
    CHECK(response::json(text).body == text);
    CHECK(response::json(view).body == text);
    CHECK(response::json(text.c_str()).body == text);
    CHECK(response::json(std::string(text)).body == text);
    CHECK(response::json({}).body.empty());
    CHECK(response::json({{"a", 1}}).body == text);
    CHECK(response::json({{"a", 1}}, 201).status == 201);
    CHECK(response::json(json("text")).body == "\"text\"");
    CHECK(response::json(json::array({1, 2})).headers.get_or("Content-Type", "") == "application/json");
}

#else // no nlohmann/json, or CORING_NO_JSON

/// A member json() (dependent, so that its absence is a false requirement, not an error).
template <class T>
concept has_json = requires(T& t) {
    t.json();
};

TEST_CASE("http json - without nlohmann/json the JSON calls are absent", "[http][json]") {
    STATIC_REQUIRE_FALSE(has_json<coring::http::request>);
    STATIC_REQUIRE_FALSE(has_json<coring::http::client_response>);
    STATIC_REQUIRE_FALSE(has_json<coring::http::client_stream>);
    // The error types exist either way.
    const coring::http::request_json_error e("what", "/x", "reason", 3);
    CHECK(e.byte() == 3);
}

#endif

} // namespace test_json
