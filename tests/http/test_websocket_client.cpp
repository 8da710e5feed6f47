// The WebSocket client against a raw server written here, for what no real server would send: handshake answers
// that are not a WebSocket's, frames that break the protocol (each met with its close code), and keep-alive pings,
// plus the headers the handshake carries and a server handler that throws.

#include "support/helpers.hpp"
#include "support/http_server_fixture.hpp"

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace test_websocket_client {

using namespace std::chrono_literals;
using coring::task;
using coring::http::websocket;
using coring::http::ws_message;
namespace wsd = coring::http::detail;

namespace {

/// What the raw server saw and did on its one connection.
struct raw_log {
    std::string request;         // the client's handshake request, head only
    std::vector<int> client_ops; // opcodes of the client's frames after the handshake
    int client_close = -1;       // the code in the client's close frame (0: none)
};

/// The request head's Sec-WebSocket-Key value.
std::string key_of(std::string_view head) {
    const std::string_view name = "Sec-WebSocket-Key: ";
    const std::size_t at = head.find(name);
    if (at == std::string_view::npos) return {};
    const std::size_t end = head.find("\r\n", at);
    return std::string(head.substr(at + name.size(), end - at - name.size()));
}

/// A server frame (unmasked unless told otherwise).
std::string server_frame(std::uint8_t first_byte, std::string_view payload, bool masked = false) {
    std::string f;
    f.push_back(static_cast<char>(first_byte));
    const std::uint8_t m = masked ? 0x80 : 0;
    if (payload.size() < 126) {
        f.push_back(static_cast<char>(m | payload.size()));
    } else {
        f.push_back(static_cast<char>(m | 126));
        f.push_back(static_cast<char>(payload.size() >> 8));
        f.push_back(static_cast<char>(payload.size() & 0xFF));
    }
    std::string body(payload);
    if (masked) {
        const char key[4] = {1, 2, 3, 4};
        f.append(key, 4);
        for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(body[i] ^ key[i % 4]);
    }
    return f + body;
}

/// One connection: reads the client's request, answers with answer(key), sends `then`, then reads the client's frames
/// until it closes (answering a close frame with a close).
task<> raw_server(coring::tcp_listener& l, std::function<std::string(const std::string&)> answer, std::string then,
                  raw_log& log) {
    coring::tcp_stream s = co_await l.accept();
    std::string in;
    char buf[4096];
    std::size_t head_end;
    while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
        const std::size_t n = co_await s.read(std::span(buf));
        if (n == 0) co_return;
        in.append(buf, n);
    }
    log.request = in.substr(0, head_end + 4);
    in.erase(0, head_end + 4);
    const std::string head = answer(key_of(log.request));
    co_await s.write_all(head);
    co_await s.write_all(then);
    for (;;) {
        wsd::ws_frame_header h;
        while (!wsd::ws_parse_header(in, h) || in.size() < h.header_size + h.length) {
            const std::size_t n = co_await coring::timeout(5s, s.read(std::span(buf)));
            if (n == 0) co_return;
            in.append(buf, n);
        }
        std::string payload = in.substr(h.header_size, static_cast<std::size_t>(h.length));
        if (h.masked) wsd::ws_apply_mask(payload.data(), payload.size(), h.mask);
        in.erase(0, h.header_size + static_cast<std::size_t>(h.length));
        log.client_ops.push_back(h.opcode);
        if (h.opcode == 0x8) {
            log.client_close = payload.size() >= 2 ? (static_cast<unsigned char>(payload[0]) << 8) |
                                                         static_cast<unsigned char>(payload[1])
                                                   : 0;
            // The client may have ended the connection already (after a protocol error it does not wait).
            const std::string answer_close = server_frame(0x88, payload.substr(0, 2));
            try {
                co_await s.write_all(answer_close);
            } catch (const std::system_error&) {}
            co_return;
        }
    }
}

std::string switching(const std::string& key, std::string_view extra = {}) {
    return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
           wsd::ws_accept_key(key) + "\r\n" + std::string(extra) + "\r\n";
}

/// Opens a client websocket to a raw server that answers with `answer` and sends `then`; runs `use` on it.
template <class Use>
raw_log against_raw(std::function<std::string(const std::string&)> answer, std::string then, Use use,
                    coring::http::websocket_client_options o = {}, coring::http::client_options co = {}) {
    raw_log log;
    coring::run([&]() -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        auto serving = coring::spawn(raw_server(l, answer, then, log));
        coring::http::client c(co);
        const std::string url = "ws://127.0.0.1:" + std::to_string(l.local_address().port()) + "/raw";
        task<> using_it = use(c, url, o);
        co_await std::move(using_it);
        co_await coring::timeout(10s, std::move(serving));
    }());
    return log;
}

} // namespace

TEST_CASE("websocket client - refuses answers that do not switch to the WebSocket it asked for", "[http][websocket]") {
    const int fds = coring_test::open_fds();
    struct bad_answer {
        const char* what;
        std::function<std::string(const std::string&)> answer;
        int status;
        const char* says;
    };
    const std::vector<bad_answer> cases{
        {"a 200", [](const std::string&) { return std::string("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); }, 200,
         "not 101"},
        {"101 without Upgrade",
         [](const std::string& k) {
             return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
                    wsd::ws_accept_key(k) + "\r\n\r\n";
         },
         101, "without Upgrade"},
        {"a wrong accept key",
         [](const std::string&) {
             return std::string("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
         },
         101, "wrong Sec-WebSocket-Accept"},
        {"an unoffered subprotocol",
         [](const std::string& k) { return switching(k, "Sec-WebSocket-Protocol: chat.v9\r\n"); }, 101,
         "was not offered"},
        {"an unoffered extension",
         [](const std::string& k) { return switching(k, "Sec-WebSocket-Extensions: permessage-deflate\r\n"); }, 101,
         "none was offered"},
        {"a head over 16 KiB",
         [](const std::string& k) { return switching(k, "X-Pad: " + std::string(20000, 'p') + "\r\n"); }, 0,
         "over 16 KiB"},
        {"not HTTP", [](const std::string&) { return std::string("SSH-2.0-OpenSSH_9.2\r\n\r\n"); }, 0, "not 101"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        int status = -1;
        std::string what;
        coring::http::websocket_client_options o;
        o.subprotocols = {"chat.v1"};
        (void)against_raw(
            c.answer, {},
            [&](coring::http::client& cl, std::string url, coring::http::websocket_client_options wo) -> task<> {
                try {
                    task<websocket> opening = cl.websocket(url, wo);
                    (void)co_await std::move(opening);
                } catch (const coring::http::websocket_handshake_error& e) {
                    status = e.status();
                    what = e.what();
                }
            },
            o);
        CHECK(status == c.status);
        CHECK(coring_test::contains(what, c.says));
    }
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("websocket client - a server that breaks the protocol gets the matching close code", "[http][websocket]") {
    struct bad_frames {
        const char* what;
        std::string frames;
        int code;
    };
    const std::vector<bad_frames> cases{
        {"a masked frame from the server", server_frame(0x81, "hi", true), 1002},
        {"a reserved opcode", server_frame(0x83, "x"), 1002},
        {"a reserved bit", server_frame(0xC1, "x"), 1002},
        {"text that is not UTF-8", server_frame(0x81, "\xC3\x28"), 1007},
        {"a control frame over 125 bytes", server_frame(0x89, std::string(126, 'p')), 1002},
        {"a fragmented control frame", server_frame(0x09, "p"), 1002},
        {"a continuation with nothing to continue", server_frame(0x80, "c"), 1002},
        {"a close with code 1005 on the wire", server_frame(0x88, std::string("\x03\xED", 2)), 1002},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        int code = -1;
        coring::http::websocket_client_options o;
        o.limits.close_timeout = 500ms;
        const raw_log log = against_raw(
            [](const std::string& k) { return switching(k); }, c.frames,
            [&](coring::http::client& cl, std::string url, coring::http::websocket_client_options wo) -> task<> {
                task<websocket> opening = cl.websocket(url, wo);
                websocket ws = co_await std::move(opening);
                try {
                    (void)co_await ws.receive();
                } catch (const coring::http::websocket_error& e) {
                    code = e.code();
                }
            },
            o);
        CHECK(code == c.code);
        CHECK(log.client_close == c.code);
    }
}

TEST_CASE("websocket client - the client's default headers go with the handshake, its own fields are refused",
          "[http][websocket]") {
    coring::http::client_options co;
    co.default_headers.set("User-Agent", "crowd/1.0");
    co.default_headers.set("Authorization", "Bearer default");
    coring::http::websocket_client_options o;
    o.headers.add("Authorization", "Bearer mine");
    o.headers.add("Origin", "http://example.test");
    std::string refused;
    const raw_log log = against_raw(
        [](const std::string& k) { return switching(k); }, {},
        [&refused](coring::http::client& cl, std::string url, coring::http::websocket_client_options wo) -> task<> {
            task<websocket> opening = cl.websocket(url, wo);
            websocket ws = co_await std::move(opening);
            co_await ws.close();
            coring::http::websocket_client_options bad;
            bad.headers.add("Sec-WebSocket-Key", "x");
            try {
                task<websocket> again = cl.websocket(url, bad);
                (void)co_await std::move(again);
            } catch (const std::invalid_argument& e) {
                refused = e.what();
            }
        },
        o, co);
    CHECK(coring_test::contains(log.request, "User-Agent: crowd/1.0\r\n"));
    CHECK(coring_test::contains(log.request, "Authorization: Bearer mine\r\n"));
    CHECK_FALSE(coring_test::contains(log.request, "Bearer default"));
    CHECK(coring_test::contains(log.request, "Origin: http://example.test\r\n"));
    CHECK(log.client_close == 1000);
    CHECK(coring_test::contains(refused, "Sec-WebSocket-Key"));
}

TEST_CASE("websocket - keep-alive pings: a peer that answers stays, one that never does is closed with 1011",
          "[http][websocket]") {
    // The raw server reads the client's frames but never answers a ping: after a silent ping_interval the client
    // pings, after another it gives up with 1011.
    coring::http::websocket_client_options o;
    o.limits.ping_interval = 100ms;
    o.limits.close_timeout = 300ms;
    int code = -1;
    coring_test::stopwatch clock;
    double gave_up_after = 0;
    const raw_log log = against_raw(
        [](const std::string& k) { return switching(k); }, {},
        [&](coring::http::client& cl, std::string url, coring::http::websocket_client_options wo) -> task<> {
            task<websocket> opening = cl.websocket(url, wo);
            websocket ws = co_await std::move(opening);
            try {
                (void)co_await ws.receive();
            } catch (const coring::http::websocket_error& e) {
                code = e.code();
                gave_up_after = clock.seconds();
            }
        },
        o);
    CHECK(code == 1011);
    CHECK(gave_up_after >= 0.2); // two silent intervals, not one
    REQUIRE(log.client_ops.size() >= 2);
    CHECK(log.client_ops.front() == 0x9); // the ping
    CHECK(log.client_close == 1011);

    // coring on both ends: the server answers pings while its handler receives, so a quiet connection lives on.
    coring::http::server app;
    coring::http::websocket_route_options ro;
    app.websocket(
        "/quiet",
        [](coring::http::request&, websocket& ws) -> task<> {
            for (;;) {
                ws_message m = co_await ws.receive();
                if (m.is_close()) co_return;
                co_await ws.send_text(m.data);
            }
        },
        ro);
    std::string echoed;
    coring_test::serve_while(app, [&echoed](std::uint16_t port) -> task<int> {
        coring::http::client c;
        coring::http::websocket_client_options wo;
        wo.limits.ping_interval = 50ms;
        task<websocket> opening = c.websocket("ws://127.0.0.1:" + std::to_string(port) + "/quiet", wo);
        websocket ws = co_await std::move(opening);
        auto receiving = coring::spawn([](websocket& ws, std::string& echoed) -> task<> {
            ws_message m = co_await ws.receive(); // pings and their pongs go by meanwhile
            echoed = m.data;
        }(ws, echoed));
        co_await coring::sleep(400ms); // eight intervals of silence
        co_await ws.send_text("still here");
        co_await coring::timeout(5s, std::move(receiving));
        co_await ws.close();
        co_return 0;
    });
    CHECK(echoed == "still here");
}

TEST_CASE("websocket server - a handler that throws closes the connection with 1011", "[http][websocket]") {
    coring::http::server app;
    app.websocket("/throws", [](coring::http::request&, websocket& ws) -> task<> {
        (void)co_await ws.receive();
        throw std::runtime_error("the handler failed");
    });
    int code = -1;
    coring_test::stderr_capture err;
    coring_test::serve_while(app, [&code](std::uint16_t port) -> task<int> {
        coring::http::client c;
        task<websocket> opening = c.websocket("ws://127.0.0.1:" + std::to_string(port) + "/throws");
        websocket ws = co_await std::move(opening);
        co_await ws.send_text("go");
        ws_message m = co_await coring::timeout(5s, ws.receive());
        if (m.is_close()) code = m.code;
        co_await ws.close();
        co_return 0;
    });
    err.restore();
    CHECK(code == 1011);
}

} // namespace test_websocket_client
