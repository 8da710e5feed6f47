// coring::http::detail::message_parser: llhttp plus coring's framing checker. Every hostile vector is refused and
// every edge-case request accepted the same way whether it arrives whole, a byte at a time, or split at any point
// (the checker is a state machine carried across reads). Responses: the same framing rules, trailers kept apart.

#include "support/http_vectors.hpp"

#include <coring/http/detail/parser.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace test_parser {

using coring::http::detail::message_parser;
using coring::http::detail::parse_state;

namespace {

/// What parsing one input produced: the messages, and the status of the error that ended it (0 for none).
struct outcome {
    std::vector<std::string> messages; // method, target, headers, trailers and body of each, flattened
    int error = 0;
    std::string reason;
};

std::string flatten(const coring::http::request& r) {
    std::string s = r.method + " " + r.target + "\n";
    for (const auto& f : r.headers) s += "H " + f.name + ": " + f.value + "\n";
    for (const auto& f : r.trailers) s += "T " + f.name + ": " + f.value + "\n";
    return s + "B " + r.body;
}

/// Parses `in` as requests, handing it over in pieces that end at each of `cuts` (and at the end).
outcome parse_requests(const std::string& in, const std::vector<std::size_t>& cuts) {
    outcome o;
    coring::http::request req;
    message_parser p(req, {});
    std::size_t pos = 0;
    std::vector<std::size_t> ends = cuts;
    ends.push_back(in.size());
    for (const std::size_t end : ends) {
        while (pos < end) {
            const auto r = p.feed(in.data() + pos, end - pos);
            if (r.state == parse_state::error) {
                o.error = p.error_status();
                o.reason = p.error_reason();
                return o;
            }
            pos += r.consumed;
            if (r.state == parse_state::need_more) break;
            o.messages.push_back(flatten(req));
            p.next();
        }
    }
    return o;
}

std::vector<std::size_t> every_byte(std::size_t n) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < n; ++i) cuts.push_back(i);
    return cuts;
}

} // namespace

TEST_CASE("http parser - hostile requests are refused whole, a byte at a time and split at every point",
          "[http][parser]") {
    for (const auto& v : coring_test::refused_requests()) {
        INFO(v.what);
        const outcome whole = parse_requests(v.bytes, {});
        INFO("reason: " << whole.reason);
        CHECK(whole.messages.empty());
        CHECK(whole.error == v.status);
        const outcome bytes = parse_requests(v.bytes, every_byte(v.bytes.size()));
        INFO("byte at a time, reason: " << bytes.reason);
        CHECK(bytes.messages.empty());
        // The checker may see a defect before llhttp's callback would: a 501 can become a 400, never a success.
        CHECK((bytes.error == v.status || bytes.error == 400));
        for (std::size_t cut = 1; cut < v.bytes.size(); ++cut) {
            const outcome split = parse_requests(v.bytes, {cut});
            if (!split.messages.empty() || split.error == 0) FAIL_CHECK("split at " << cut << " was accepted");
        }
    }
}

TEST_CASE("http parser - edge-case requests parse the same whole, a byte at a time and split at every point",
          "[http][parser]") {
    for (const auto& v : coring_test::accepted_requests()) {
        INFO(v.what);
        const outcome whole = parse_requests(v.bytes, {});
        INFO("reason: " << whole.reason);
        REQUIRE(whole.error == 0);
        REQUIRE(whole.messages.size() == 1);
        CHECK(parse_requests(v.bytes, every_byte(v.bytes.size())).messages == whole.messages);
        for (std::size_t cut = 1; cut < v.bytes.size(); ++cut) {
            const outcome split = parse_requests(v.bytes, {cut});
            if (split.messages != whole.messages) FAIL_CHECK("split at " << cut << ": " << split.reason);
        }
    }
}

TEST_CASE("http parser - a CR LF CR X header end does not start a second request (llhttp 8 smuggling)",
          "[http][parser]") {
    const std::string in = "GET / HTTP/1.1\r\nHost: a\r\n\rXGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    const outcome o = parse_requests(in, {});
    CHECK(o.messages.empty());
    CHECK(o.error == 400);
    CHECK(o.reason.find("CRLF CRLF") != std::string::npos);
}

TEST_CASE("http parser - trailer fields are kept apart from the header fields, never merged", "[http][parser]") {
    const std::string in = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                           "0\r\nX-Admin: yes\r\nContent-Length: 5\r\n\r\n"
                           "GET / HTTP/1.1\r\nHost: b\r\n\r\n";
    for (const auto& cuts : {std::vector<std::size_t>{}, every_byte(in.size())}) {
        coring::http::request req;
        message_parser p(req, {});
        std::size_t pos = 0;
        std::vector<coring::http::request> got;
        std::vector<std::size_t> ends = cuts;
        ends.push_back(in.size());
        for (const std::size_t end : ends)
            while (pos < end) {
                const auto r = p.feed(in.data() + pos, end - pos);
                REQUIRE(r.state != parse_state::error);
                pos += r.consumed;
                if (r.state == parse_state::need_more) break;
                got.push_back(req);
                p.next();
            }
        REQUIRE(got.size() == 2);
        CHECK(got[0].body == "abc");
        CHECK_FALSE(got[0].headers.contains("X-Admin"));
        CHECK(got[0].headers.get_or("Content-Length", "none") == "none");
        CHECK(got[0].trailers.get_or("X-Admin", "") == "yes");
        CHECK(got[0].trailers.get_or("Content-Length", "") == "5");
        // The next request on the connection starts with no trailers of its own.
        CHECK(got[1].trailers.empty());
        CHECK(got[1].headers.get_or("Host", "") == "b");
    }
}

TEST_CASE("http parser - trailing whitespace is not part of a value", "[http][parser]") {
    coring::http::request req;
    message_parser p(req, {});
    const std::string in = "GET / HTTP/1.1\r\nHost: a \t\r\nX:  \t b c \t \r\nY: \t\r\n\r\n";
    REQUIRE(p.feed(in.data(), in.size()).state == parse_state::message_done);
    CHECK(req.headers.get_or("Host", "") == "a");
    CHECK(req.headers.get_or("X", "") == "b c");
    CHECK(req.headers.get_or("Y", "?") == "");
}

namespace {

struct response_outcome {
    std::vector<std::string> messages;
    int error = 0;
    bool keep_alive = false;
};

/// Parses `in` as responses (then the end of input); `trailers` receives the trailer fields when given.
response_outcome parse_responses(const std::string& in, bool bytewise, coring::http::headers* trailers = nullptr) {
    response_outcome o;
    coring::http::headers headers;
    std::string body;
    message_parser p(headers, body, {});
    if (trailers) p.set_trailers(*trailers);
    std::size_t pos = 0;
    auto record = [&] {
        std::string s = std::to_string(p.status_code()) + "\n";
        for (const auto& f : headers) s += "H " + f.name + ": " + f.value + "\n";
        o.messages.push_back(s + "B " + body);
        o.keep_alive = p.keep_alive();
    };
    while (pos < in.size()) {
        const std::size_t n = bytewise ? 1 : in.size() - pos;
        std::size_t off = 0;
        while (off < n) {
            const auto r = p.feed(in.data() + pos + off, n - off);
            if (r.state == parse_state::error) {
                o.error = p.error_status();
                return o;
            }
            off += r.consumed;
            if (r.state == parse_state::need_more) break;
            record();
            p.next();
        }
        pos += n;
    }
    const parse_state end = p.finish();
    if (end == parse_state::message_done) record();
    if (end == parse_state::error) o.error = p.error_status();
    return o;
}

} // namespace

TEST_CASE("http parser - responses: the same framing rules as requests", "[http][parser]") {
    const std::vector<std::string> bad = {
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\rXHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcQQ0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: y\n\r\n",
        // Status lines llhttp 8 reads loosely (status 0, or a code a whitespace-splitting reader sees differently).
        "HTTP/1.1  204 No Content\r\nContent-Length: 3\r\n\r\nabc",
        "HTTP/1.1  100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 0200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 \r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 000 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 999 OK\r\nContent-Length: 0\r\n\r\n",
        "http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        // Transfer-Encoding that llhttp does not take as chunked beside a Content-Length.
        "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\nContent-Length: 3\r\n\r\nabc",
        // A chunked body cut short by the close is not a complete response.
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    };
    for (const std::string& in : bad) {
        INFO(in);
        CHECK(parse_responses(in, false).error == 400);
        CHECK(parse_responses(in, true).error == 400);
    }
}

TEST_CASE("http parser - responses: trailers apart, 204 with a length, HTTP/1.0 with Transfer-Encoding, until close",
          "[http][parser]") {
    for (const bool bytewise : {false, true}) {
        INFO("byte at a time: " << bytewise);
        coring::http::headers trailers;
        auto o = parse_responses("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
                                 "Set-Cookie: admin=1\r\n\r\n",
                                 bytewise, &trailers);
        REQUIRE(o.messages.size() == 1);
        CHECK(o.messages[0].find("Set-Cookie") == std::string::npos);
        CHECK(trailers.get_or("Set-Cookie", "") == "admin=1");
        // Without a sink the trailers are dropped, still never merged.
        o = parse_responses("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\n", bytewise);
        REQUIRE(o.messages.size() == 1);
        CHECK(o.messages[0].find("X-T") == std::string::npos);

        // A 204 that claims a length has no body: the next response follows at once.
        o = parse_responses("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"
                            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                            bytewise);
        REQUIRE(o.messages.size() == 2);
        CHECK(o.messages[1].substr(0, 4) == "200\n");
        CHECK(o.messages[1].substr(o.messages[1].size() - 4) == "B ok");

        // Transfer-Encoding in HTTP/1.0: read as framed, the connection not reused.
        o = parse_responses("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "2\r\nok\r\n0\r\n\r\n",
                            bytewise);
        REQUIRE(o.messages.size() == 1);
        CHECK_FALSE(o.keep_alive);

        // A status line without a reason phrase is fine.
        o = parse_responses("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", bytewise);
        REQUIRE(o.messages.size() == 1);
        CHECK(o.messages[0].substr(0, 4) == "200\n");

        // No length: the body ends at the close.
        o = parse_responses("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it\r\n\rX", bytewise);
        REQUIRE(o.messages.size() == 1);
        CHECK(o.messages[0].substr(o.messages[0].size() - 13) == "all of it\r\n\rX");
    }
}

TEST_CASE("http parser - upgrades end the connection, 100-continue with a chunked body, finish and next between "
          "messages",
          "[http][parser]") {
    for (const char* in : {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                           "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"}) {
        INFO(in);
        coring::http::request req;
        message_parser p(req, {});
        const auto r = p.feed(in, std::char_traits<char>::length(in));
        REQUIRE(r.state == parse_state::message_done);
        CHECK_FALSE(p.keep_alive());
    }
    {
        coring::http::request req;
        message_parser p(req, {});
        const std::string in =
            "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
        REQUIRE(p.feed(in.data(), in.size()).state == parse_state::need_more);
        CHECK(p.expect_continue());
    }
    {
        // After a message, an end of input with nothing new is not an error, and next() twice changes nothing.
        coring::http::headers h;
        std::string body;
        message_parser p(h, body, {});
        const std::string in = "HTTP/1.1 204 No Content\r\n\r\n";
        REQUIRE(p.feed(in.data(), in.size()).state == parse_state::message_done);
        p.next();
        p.next();
        CHECK(p.finish() == parse_state::need_more);
    }
}

} // namespace test_parser
