// WebSockets (RFC 6455) on coring::http::server and client: the frame codec, echo against peers nobody here wrote
// (Python's websockets library and aiohttp, as clients and as a server), wss:// over coring's TLS, the closing
// handshake both ways, a shutdown's 1001, the opening handshake's errors, and a hostile client written from the RFC
// section by section, each answered with the right close code.

#include "support/helpers.hpp"
#include "support/http_server_fixture.hpp"
#include "support/https_helpers.hpp"
#include "support/net_helpers.hpp"
#include "support/peer_process.hpp"

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace test_websocket {

using namespace std::chrono_literals;
using coring::task;
using coring::http::request;
using coring::http::websocket;
using coring::http::ws_message;
using coring_test::child_process;
using coring_test::finished;
using coring_test::process_result;
namespace wsd = coring::http::detail;

namespace {

bool have_module(const char* module) {
    if (!coring_test::executable("/usr/bin/python3")) return false;
    return std::system(("/usr/bin/python3 -c 'import " + std::string(module) + "' >/dev/null 2>&1").c_str()) == 0;
}

/// What the echo route saw.
struct echo_log {
    int messages = 0;
    std::uint16_t close_code = 0;
    std::string close_reason;
    std::string subprotocol;
    std::string failure; // a websocket_error's message
};

/// Echoes every message back until the peer closes; records the close.
void add_echo(coring::http::server& app, echo_log& log, coring::http::websocket_route_options o = {}) {
    app.websocket(
        "/echo",
        [&log](request&, websocket& ws) -> task<> {
            log.subprotocol = ws.subprotocol();
            try {
                for (;;) {
                    ws_message m = co_await ws.receive();
                    if (m.is_close()) {
                        log.close_code = m.code;
                        log.close_reason = m.data;
                        break;
                    }
                    ++log.messages;
                    if (m.is_text()) co_await ws.send_text(m.data);
                    else co_await ws.send_binary(m.data);
                }
            } catch (const coring::http::websocket_error& e) {
                log.failure = e.what();
                throw;
            }
        },
        std::move(o));
}

using coring_test::serve_while;

// ---- a raw client, for what no library would send ----

constexpr std::array<std::uint8_t, 4> test_mask{0x11, 0x22, 0x33, 0x44};

/// One frame as a client sends it (masked unless told otherwise), with the header bits given.
std::string frame(std::uint8_t first_byte, std::string_view payload, bool masked = true) {
    std::string out;
    wsd::ws_append_header(out, (first_byte & 0x80) != 0, first_byte & 0x0F, payload.size(),
                          masked ? test_mask.data() : nullptr);
    out[0] = static_cast<char>(first_byte); // the RSV bits too
    const std::size_t at = out.size();
    out.append(payload);
    if (masked) wsd::ws_apply_mask(out.data() + at, payload.size(), test_mask);
    return out;
}
std::string close_payload(std::uint16_t code, std::string_view reason = {}) {
    std::string p;
    p.push_back(static_cast<char>(code >> 8));
    p.push_back(static_cast<char>(code & 0xFF));
    p.append(reason);
    return p;
}

const std::string handshake_request =
    "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// What the server sent back after the handshake, until it closed the connection: its frames, unparsed.
task<std::string> exchange(std::uint16_t port, std::string request, std::string after) {
    coring::tcp_stream s = co_await coring::tcp_stream::connect(coring::address::from("127.0.0.1", port));
    co_await s.write_all(request);
    co_await s.write_all(after);
    std::string got;
    char buf[4096];
    for (;;) {
        const std::size_t n = co_await coring::timeout(5s, s.read(std::span(buf)));
        if (n == 0) break;
        got.append(buf, n);
    }
    co_return got;
}

/// The server's frames after its 101 head: (opcode, payload) pairs.
std::vector<std::pair<int, std::string>> frames_after_head(const std::string& got) {
    std::vector<std::pair<int, std::string>> out;
    const std::size_t head_end = got.find("\r\n\r\n");
    if (head_end == std::string::npos) return out;
    std::string_view rest = std::string_view(got).substr(head_end + 4);
    wsd::ws_frame_header h;
    while (wsd::ws_parse_header(rest, h) && rest.size() >= h.header_size + h.length) {
        out.emplace_back(h.opcode, std::string(rest.substr(h.header_size, static_cast<std::size_t>(h.length))));
        rest.remove_prefix(h.header_size + static_cast<std::size_t>(h.length));
    }
    return out;
}

/// The close code of the server's close frame (0 when it sent none).
int close_code_in(const std::vector<std::pair<int, std::string>>& frames) {
    for (const auto& [op, payload] : frames)
        if (op == 0x8 && payload.size() >= 2)
            return (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]);
    return 0;
}

} // namespace

TEST_CASE("websocket frames - SHA-1, the accept key, UTF-8, headers and masks", "[http][websocket]") {
    const auto abc = wsd::sha1("abc");
    CHECK(wsd::base64_encode(abc.data(), abc.size()) == "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
    CHECK(wsd::ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); // RFC 6455 section 1.3
    const std::string million(1000000, 'a');
    const auto m = wsd::sha1(million); // FIPS 180 sample: 34aa973c d4c4daa4 f61eeb2b dbad2731 6534016f
    CHECK(wsd::base64_encode(m.data(), m.size()) == "NKqXPNTE2qT2Husr260nMWU0AW8=");
    CHECK(wsd::base64_decoded_size("dGhlIHNhbXBsZSBub25jZQ==") == 16);
    CHECK(wsd::base64_decoded_size("dGhlIHNhbXBsZSBub25jZQ=") == -1);
    CHECK(wsd::base64_decoded_size("dGhl*HNhbXBsZSBub25jZQ==") == -1);

    CHECK(wsd::ws_valid_utf8("plain ascii, long enough to take the eight-byte path"));
    CHECK(wsd::ws_valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
    CHECK_FALSE(wsd::ws_valid_utf8("\xC3"));             // truncated
    CHECK_FALSE(wsd::ws_valid_utf8("\xC0\xAF"));         // overlong
    CHECK_FALSE(wsd::ws_valid_utf8("\xE0\x80\xAF"));     // overlong
    CHECK_FALSE(wsd::ws_valid_utf8("\xED\xA0\x80"));     // a surrogate
    CHECK_FALSE(wsd::ws_valid_utf8("\xF4\x90\x80\x80")); // above U+10FFFF
    CHECK_FALSE(wsd::ws_valid_utf8("abcdefgh\xFF"));

    for (std::uint64_t len : {0ull, 125ull, 126ull, 65535ull, 65536ull, 1ull << 40}) {
        std::string out;
        wsd::ws_append_header(out, true, 0x2, len, test_mask.data());
        wsd::ws_frame_header h;
        REQUIRE(wsd::ws_parse_header(out, h));
        CHECK(h.length == len);
        CHECK(h.header_size == out.size());
        CHECK(h.masked);
        CHECK(h.mask == test_mask);
        CHECK_FALSE(wsd::ws_parse_header(std::string_view(out).substr(0, out.size() - 1), h));
    }
    std::string data = "0123456789abcdefghij";
    const std::string original = data;
    wsd::ws_apply_mask(data.data(), data.size(), test_mask);
    CHECK(data != original);
    // Unmasking in two pieces, the second starting mid-key, gives the original back.
    wsd::ws_apply_mask(data.data(), 7, test_mask);
    wsd::ws_apply_mask(data.data() + 7, data.size() - 7, test_mask, 7);
    CHECK(data == original);
}

TEST_CASE("websocket server - Python's websockets client: text, binary, fragments, 200 KB, ping, close 4000",
          "[http][websocket][peers]") {
    if (!have_module("websockets")) {
        WARN("python3-websockets is not installed: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    echo_log log;
    coring::http::server app;
    coring::http::websocket_route_options o;
    o.subprotocols = {"chat.v1"};
    add_echo(app, log, o);
    const process_result r = serve_while(app, [](std::uint16_t port) -> task<process_result> {
        const std::string script = R"PY(
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], subprotocols=["chat.v2", "chat.v1"], max_size=None) as ws:
        out = [str(ws.subprotocol)]
        await ws.send("h\u00e9llo")
        out.append(await ws.recv())
        await ws.send(b"\x00\x01\x02")
        out.append((await ws.recv()).hex())
        await ws.send(["frag", "mented ", "t\u00e9xt"])
        out.append(await ws.recv())
        await ws.send("x" * 200000)
        out.append(str(len(await ws.recv())))
        pong = await ws.ping(b"p1")
        await asyncio.wait_for(pong, 5)
        out.append("pong")
        await ws.close(4000, "bye")
        out.append(str(ws.close_code))
    print("|".join(out))
asyncio.run(main())
)PY";
        child_process py({"/usr/bin/python3", "-c", script, "ws://127.0.0.1:" + std::to_string(port) + "/echo"});
        co_return co_await finished(py, 20s);
    });
    INFO(r.describe());
    REQUIRE(r.succeeded());
    CHECK(r.out == "chat.v1|h\xC3\xA9llo|000102|fragmented t\xC3\xA9xt|200000|pong|4000\n");
    CHECK(log.messages == 4);
    CHECK(log.close_code == 4000);
    CHECK(log.close_reason == "bye");
    CHECK(log.subprotocol == "chat.v1");
    CHECK(log.failure.empty());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("websocket server - aiohttp's client: echo, then the server closes with its own code",
          "[http][websocket][peers]") {
    if (!have_module("aiohttp")) {
        WARN("python3-aiohttp is not installed: skipped");
        return;
    }
    coring::http::server app;
    app.websocket("/talk", [](request& req, websocket& ws) -> task<> {
        ws_message m = co_await ws.receive();
        co_await ws.send_text("you said " + m.data + " on " + std::string(req.path()));
        ws_message b = co_await ws.receive();
        co_await ws.send_binary(std::string(b.data.size() * 2, '\x7f'));
        co_await ws.close(4001, "done here");
    });
    const process_result r = serve_while(app, [](std::uint16_t port) -> task<process_result> {
        const std::string script = R"PY(
import aiohttp, asyncio, sys
async def main():
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(sys.argv[1]) as ws:
            await ws.send_str("hi")
            m = await ws.receive()
            out = [m.data]
            await ws.send_bytes(b"\xff" * 10)
            m = await ws.receive()
            out.append(str(len(m.data)))
            m = await ws.receive()
            out.append(m.type.name)
            out.append(str(ws.close_code))
    print("|".join(out))
asyncio.run(main())
)PY";
        child_process py({"/usr/bin/python3", "-c", script, "ws://127.0.0.1:" + std::to_string(port) + "/talk"});
        co_return co_await finished(py, 20s);
    });
    INFO(r.describe());
    REQUIRE(r.succeeded());
    CHECK(r.out == "you said hi on /talk|20|CLOSE|4001\n");
}

TEST_CASE("websocket server - shutdown() sends 1001 to an open connection", "[http][websocket][peers]") {
    if (!have_module("websockets")) {
        WARN("python3-websockets is not installed: skipped");
        return;
    }
    echo_log log;
    coring::http::server app;
    add_echo(app, log);
    process_result r;
    coring::run([](coring::http::server& app, process_result& r, echo_log& log) -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        auto serving = coring::spawn(app.serve(l));
        const std::string script = R"PY(
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        await ws.send("ready")
        print(await ws.recv(), flush=True)
        try:
            await ws.recv()
        except websockets.ConnectionClosed as e:
            print(e.rcvd.code if e.rcvd else "none")
asyncio.run(main())
)PY";
        child_process py(
            {"/usr/bin/python3", "-c", script, "ws://127.0.0.1:" + std::to_string(l.local_address().port()) + "/echo"});
        // The client is connected once the server has echoed its first message.
        for (int i = 0; i < 1500 && log.messages == 0; ++i) co_await coring::sleep(10ms);
        app.shutdown(5s);
        r = co_await finished(py, 10s);
        co_await serving;
    }(app, r, log));
    INFO(r.describe());
    REQUIRE(r.succeeded());
    CHECK(r.out == "ready\n1001\n");
    CHECK(log.close_code == 1001); // the client's answer reached the handler
}

TEST_CASE("websocket server - the opening handshake: 426 without upgrade or with another version, 400, 403",
          "[http][websocket]") {
    coring::http::server app;
    echo_log log;
    coring::http::websocket_route_options o;
    o.check_origin = [](const request& r) { return r.headers.get_or("Origin", "") != "http://evil.example"; };
    add_echo(app, log, o);
    std::vector<std::string> heads;
    (void)serve_while(app, [&heads](std::uint16_t port) -> task<process_result> {
        const std::string base = "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
        const std::vector<std::string> requests{
            base + "\r\n",
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: "
            "8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: "
            "13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n",
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: "
            "13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://evil.example\r\n\r\n",
            handshake_request,
        };
        for (const std::string& req : requests) {
            coring::tcp_stream s = co_await coring::tcp_stream::connect(coring::address::from("127.0.0.1", port));
            co_await s.write_all(req);
            std::string got;
            char buf[2048];
            while (got.find("\r\n\r\n") == std::string::npos) {
                const std::size_t n = co_await coring::timeout(5s, s.read(std::span(buf)));
                if (n == 0) break;
                got.append(buf, n);
            }
            heads.push_back(got.substr(0, got.find("\r\n\r\n")));
            co_await s.close();
        }
        co_return process_result{};
    });
    REQUIRE(heads.size() == 5);
    CHECK(coring_test::contains(heads[0], "HTTP/1.1 426"));
    CHECK(coring_test::contains(heads[1], "HTTP/1.1 426"));
    CHECK(coring_test::contains(heads[1], "Sec-WebSocket-Version: 13"));
    CHECK(coring_test::contains(heads[2], "HTTP/1.1 400"));
    CHECK(coring_test::contains(heads[3], "HTTP/1.1 403"));
    CHECK(coring_test::contains(heads[4], "HTTP/1.1 101 Switching Protocols"));
    CHECK(coring_test::contains(heads[4], "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

TEST_CASE("websocket server - hostile frames from RFC 6455, each answered with its close code", "[http][websocket]") {
    struct hostile {
        const char* what;
        std::string bytes;
        int code;
    };
    const std::string big(2000, 'b');
    const std::string part(600, 'p');
    std::string huge_length = frame(0x82, "");
    huge_length[1] = static_cast<char>(0x80 | 127); // a 64-bit length with the top bit set, then a mask
    huge_length.insert(2, std::string("\x80\0\0\0\0\0\0\x01", 8));
    const std::vector<hostile> cases{
        {"5.1 an unmasked client frame", frame(0x81, "hi", false), 1002},
        {"5.2 RSV1 without an extension", frame(0xC1, "hi"), 1002},
        {"5.2 reserved data opcode 3", frame(0x83, "hi"), 1002},
        {"5.2 reserved control opcode 0xB", frame(0x8B, ""), 1002},
        {"5.5 a control frame over 125 bytes", frame(0x89, std::string(126, 'p')), 1002},
        {"5.5 a fragmented control frame", frame(0x09, "p"), 1002},
        {"5.4 a continuation with nothing to continue", frame(0x80, "x"), 1002},
        {"5.4 a new message inside a fragmented one", frame(0x01, "a") + frame(0x81, "b"), 1002},
        {"8.1 invalid UTF-8 split across fragments", frame(0x01, "caf\xC3") + frame(0x80, "\x28"), 1007},
        {"7.4.1 close code 1005 on the wire", frame(0x88, close_payload(1005)), 1002},
        {"7.4.1 close code 1006 on the wire", frame(0x88, close_payload(1006)), 1002},
        {"7.4.1 close code 1015 on the wire", frame(0x88, close_payload(1015)), 1002},
        {"7.4.1 close code 999", frame(0x88, close_payload(999)), 1002},
        {"5.5.1 a close payload of one byte", frame(0x88, "x"), 1002},
        {"5.5.1 a close reason that is not UTF-8", frame(0x88, close_payload(1000, "\xFF\xFE")), 1007},
        {"5.2 a 64-bit length with the top bit set", huge_length, 1002},
        {"10.4 a frame over max_frame", frame(0x82, big), 1009},
        {"10.4 a message over max_message in fragments", frame(0x02, part) + frame(0x00, part) + frame(0x80, part),
         1009},
    };
    coring::http::server app;
    echo_log log;
    coring::http::websocket_route_options o;
    o.limits.max_frame = 1024;
    o.limits.max_message = 1500;
    add_echo(app, log, o);
    std::vector<std::string> got;
    std::string valid_split;
    (void)serve_while(app, [&](std::uint16_t port) -> task<process_result> {
        // Each exchange is made before it is awaited: no temporary string inside a co_await operand (GCC 12).
        for (const hostile& c : cases) {
            task<std::string> one = exchange(port, handshake_request, c.bytes);
            std::string answer = co_await std::move(one);
            got.push_back(std::move(answer));
        }
        // The positive twin of the UTF-8 case: a character split across fragments is fine.
        task<std::string> fine = exchange(
            port, handshake_request, frame(0x01, "caf\xC3") + frame(0x80, "\xA9") + frame(0x88, close_payload(1000)));
        valid_split = co_await std::move(fine);
        co_return process_result{};
    });
    REQUIRE(got.size() == cases.size());
    for (std::size_t i = 0; i < cases.size(); ++i) {
        INFO(cases[i].what);
        CHECK(close_code_in(frames_after_head(got[i])) == cases[i].code);
    }
    const auto ok = frames_after_head(valid_split);
    REQUIRE(ok.size() == 2);
    CHECK(ok[0] == std::pair<int, std::string>(0x1, "caf\xC3\xA9"));
    CHECK(close_code_in(ok) == 1000);
}

TEST_CASE("websocket client - against Python's websockets server: text, binary, fragments, 200 KB, ping, close",
          "[http][websocket][peers]") {
    if (!have_module("websockets")) {
        WARN("python3-websockets is not installed: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    std::vector<std::string> got;
    std::string failure;
    coring::run([](std::vector<std::string>& got, std::string& failure) -> task<> {
        const char* const script = R"PY(
import asyncio, websockets
async def echo(ws):
    async for m in ws:
        if m == "fragments please":
            await ws.send(["frag", "ments ", "\u00e9"])
        else:
            await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
)PY";
        coring_test::peer_server srv = coring_test::start_peer({"/usr/bin/python3", "-c", script});
        try {
            coring::http::client c;
            task<websocket> opening = c.websocket("ws://127.0.0.1:" + std::to_string(srv.port) + "/");
            websocket ws = co_await std::move(opening);
            co_await ws.send_text("h\xC3\xA9llo");
            {
                ws_message r = co_await ws.receive();
                got.push_back(r.data);
            }
            co_await ws.send_binary(std::string("\x00\x01\xFF", 3));
            ws_message b = co_await ws.receive();
            got.push_back(b.is_binary() ? "binary " + std::to_string(b.data.size()) : "not binary");
            co_await ws.send_text("fragments please");
            {
                ws_message r = co_await ws.receive();
                got.push_back(r.data);
            }
            co_await ws.send_text(std::string(200000, 'x'));
            {
                ws_message r = co_await ws.receive();
                got.push_back(std::to_string(r.data.size()));
            }
            co_await ws.ping("are you there");
            co_await ws.send_text("after the ping");
            {
                ws_message r = co_await ws.receive();
                got.push_back(r.data);
            } // the pong is consumed on the way
            co_await ws.close(1000, "done");
            got.push_back(ws.closed() ? "closed" : "open");
        } catch (const std::exception& e) {
            failure = e.what();
        }
    }(got, failure));
    CHECK(failure.empty());
    CHECK(got == std::vector<std::string>{"h\xC3\xA9llo", "binary 3", "fragments \xC3\xA9", "200000", "after the ping",
                                          "closed"});
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("websocket client - coring to coring over ws:// and wss://, subprotocols, a refused handshake",
          "[http][websocket]") {
    const int fds = coring_test::open_fds();
    echo_log log;
    coring::http::server app;
    coring::http::websocket_route_options o;
    o.subprotocols = {"chat.v1", "chat.v2"};
    add_echo(app, log, o);
    app.get("/plain", [](request&) -> task<coring::http::response> { co_return coring::http::response::text("hi"); });
    std::vector<std::string> got;
    int refused_status = -1;
    std::string refused_what;
    (void)serve_while(app, [&](std::uint16_t port) -> task<process_result> {
        coring::http::client c;
        coring::http::websocket_client_options co;
        co.subprotocols = {"chat.v2", "chat.v9"};
        co.headers.add("Origin", "http://example.test");
        task<websocket> opening = c.websocket("ws://127.0.0.1:" + std::to_string(port) + "/echo", co);
        websocket ws = co_await std::move(opening);
        got.push_back(ws.subprotocol());
        co_await ws.send_text("one");
        {
            ws_message r = co_await ws.receive();
            got.push_back(r.data);
        }
        co_await ws.close(4002);
        try {
            task<websocket> wrong = c.websocket("ws://127.0.0.1:" + std::to_string(port) + "/plain");
            (void)co_await std::move(wrong);
        } catch (const coring::http::websocket_handshake_error& e) {
            refused_status = e.status();
            refused_what = e.what();
        }
        co_return process_result{};
    });
    CHECK(got == std::vector<std::string>{"chat.v2", "one"});
    CHECK(log.close_code == 4002);
    CHECK(refused_status == 200);
    CHECK(coring_test::contains(refused_what, "not 101"));

#if CORING_HTTP_TLS
    echo_log secure_log;
    coring::http::server secure;
    add_echo(secure, secure_log);
    std::string over_tls;
    coring::run([](coring::http::server& app, std::string& over_tls) -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        auto serving = coring::spawn(app.serve(l, coring_test::test_server_context()));
        coring::http::client c(coring_test::trusting_options());
        task<websocket> opening = c.websocket("wss://localhost:" + std::to_string(l.local_address().port()) + "/echo");
        websocket ws = co_await std::move(opening);
        co_await ws.send_text(std::string(100000, 's'));
        ws_message r = co_await ws.receive();
        over_tls = std::to_string(r.data.size());
        co_await ws.close();
        app.shutdown(1s);
        co_await serving;
    }(secure, over_tls));
    CHECK(over_tls == "100000");
    CHECK(secure_log.close_code == 1000);
#endif
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("websocket server - a send that times out while the buffer drains still goes out whole and in order",
          "[http][websocket]") {
    // The peer reads nothing for a while, so an 8 MiB message cannot be written: its send waits for the buffer to
    // drain and times out. As with asyncio's write() and drain(), the message was queued and still goes, whole, before
    // the next one: the peer then reads everything and must find both messages and the close, each frame intact.
    bool timed_out = false;
    coring::http::server app;
    app.websocket("/big", [&](request&, websocket& ws) -> task<> {
        const std::string big(8u << 20, 'b');
        try {
            co_await coring::timeout(200ms, ws.send_binary(big));
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        co_await ws.send_text("after");
        co_await ws.close(coring::http::close_code::normal);
    });
    std::string got;
    (void)serve_while(app, [&got](std::uint16_t port) -> task<process_result> {
        coring::tcp_stream s = co_await coring::tcp_stream::connect(coring::address::from("127.0.0.1", port));
        const std::string req = "GET /big HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        co_await s.write_all(req);
        co_await coring::sleep(500ms); // reads nothing meanwhile
        std::vector<char> buf(256 * 1024);
        bool answered = false;
        for (;;) {
            const std::size_t n = co_await coring::timeout(5s, s.read(std::span(buf)));
            if (n == 0) break;
            got.append(buf.data(), n);
            // Answer the close, once it is in, so that the server's close() ends at once.
            if (!answered && got.size() > (8u << 20)) {
                const auto fs = frames_after_head(got);
                if (!fs.empty() && fs.back().first == 0x8) {
                    answered = true;
                    const std::string answer = frame(0x88, close_payload(1000));
                    co_await s.write_all(answer);
                }
            }
        }
        co_return process_result{};
    });
    CHECK(timed_out);
    const auto fs = frames_after_head(got);
    REQUIRE(fs.size() == 3);
    CHECK(fs[0].first == 0x2);
    CHECK(fs[0].second == std::string(8u << 20, 'b'));
    CHECK(fs[1].first == 0x1);
    CHECK(fs[1].second == "after");
    CHECK(close_code_in(fs) == 1000);
}

TEST_CASE("websocket server - a write that fails ends sending: later sends are refused and the session ends",
          "[http][websocket]") {
    // The peer reads nothing and goes away: the write of the queued 8 MiB fails (the connection is reset), which may
    // have left part of a frame on the wire, so nothing may follow it: the next send is refused.
    bool timed_out = false;
    std::string refused;
    bool session_over = false;
    coring::http::server app;
    coring::http::websocket_route_options o;
    o.limits.close_timeout = 300ms;
    app.websocket(
        "/big",
        [&](request&, websocket& ws) -> task<> {
            const std::string big(8u << 20, 'b');
            try {
                co_await coring::timeout(200ms, ws.send_binary(big));
            } catch (const coring::timeout_error&) {
                timed_out = true;
            }
            co_await coring::sleep(1500ms); // the peer is gone meanwhile
            try {
                co_await ws.send_text("after");
            } catch (const coring::http::websocket_error& e) {
                refused = e.what();
            }
            session_over = true;
        },
        o);
    coring_test::stopwatch clock;
    (void)serve_while(app, [](std::uint16_t port) -> task<process_result> {
        coring::tcp_stream s = co_await coring::tcp_stream::connect(coring::address::from("127.0.0.1", port));
        const std::string req = "GET /big HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        co_await s.write_all(req);
        co_await coring::sleep(1s); // reads nothing meanwhile
        co_await s.close();
        co_return process_result{};
    });
    CHECK(timed_out);
    CHECK(coring_test::contains(refused, "sending failed earlier"));
    CHECK(session_over);
    CHECK(clock.seconds() < 10);
}

TEST_CASE("websocket server - shutdown ends a connection whose peer reads nothing, within its timeouts",
          "[http][websocket]") {
    coring::http::server app;
    coring::http::websocket_route_options o;
    o.limits.close_timeout = 300ms;
    int sent = 0;
    app.websocket(
        "/flood",
        [&sent](request&, websocket& ws) -> task<> {
            const std::string chunk(64 * 1024, 'f');
            for (;;) {
                co_await ws.send_binary(chunk); // until the socket is full, then it waits (and is cancelled)
                ++sent;
            }
        },
        o);
    double took = 0;
    coring::run([](coring::http::server& app, double& took) -> task<> {
        auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        auto serving = coring::spawn(app.serve(l));
        coring::tcp_stream s = co_await coring::tcp_stream::connect(l.local_address());
        const std::string req = "GET /flood HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        co_await s.write_all(req);
        co_await coring::sleep(300ms); // the server fills the socket; this side reads nothing
        coring_test::stopwatch clock;
        app.shutdown(200ms);
        co_await coring::timeout(10s, std::move(serving));
        took = clock.seconds();
        co_await s.close();
    }(app, took));
    CHECK(sent > 0);
    CHECK(took < 5); // grace, then the close frame's own bound, then the wait for the peer's: about a second
}

TEST_CASE("websocket server - a send another task has under way when the handler returns keeps what it uses",
          "[http][websocket]") {
    // A broadcaster mid-send to a peer that reads nothing, when the handler returns: the websocket object goes, the
    // send must not touch freed memory (ASan checks it), and the session ends within its timeouts.
    coring::http::server app;
    coring::http::websocket_route_options o;
    o.limits.close_timeout = 200ms;
    bool handler_done = false;
    app.websocket(
        "/orphan",
        [&handler_done](request&, websocket& ws) -> task<> {
            coring::spawn([](websocket& ws, std::string big) -> task<> {
                try {
                    co_await ws.send_binary(big);
                } catch (const std::exception&) {}
            }(ws, std::string(8u << 20, 'o')))
                .detach();
            co_await coring::sleep(50ms); // the send has begun and waits for room
            handler_done = true;
        },
        o);
    (void)serve_while(app, [](std::uint16_t port) -> task<process_result> {
        coring::tcp_stream s = co_await coring::tcp_stream::connect(coring::address::from("127.0.0.1", port));
        const std::string req = "GET /orphan HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        co_await s.write_all(req);
        co_await coring::sleep(800ms);
        co_await s.close();
        co_return process_result{};
    });
    CHECK(handler_done);
}

/// A handler that greets, then receives until the peer closes (or fails).
void add_greeter(coring::http::server& app) {
    app.websocket("/greet", [](request&, websocket& ws) -> task<> {
        co_await ws.send_text("hi");
        for (;;) {
            ws_message m = co_await ws.receive();
            if (m.is_close()) break;
        }
    });
}

TEST_CASE("websocket server - a peer that ends its stream without a close frame is disconnected at once",
          "[http][websocket]") {
    // Regression: the end of the peer's stream was taken for the end of ours, so close() did nothing: the socket and
    // the connection's state stayed for good.
    const int fds = coring_test::open_fds();
    coring::http::server app;
    add_greeter(app);
    std::string got;
    bool eof = false;
    (void)serve_while(app, [&](std::uint16_t port) -> task<process_result> {
        coring::tcp_stream s = co_await coring::tcp_stream::connect(coring::address::from("127.0.0.1", port));
        const std::string req = "GET /greet HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        co_await s.write_all(req);
        char buf[4096];
        while (frames_after_head(got).empty()) {
            const std::size_t n = co_await coring::timeout(5s, s.read(std::span(buf)));
            if (n == 0) break;
            got.append(buf, n);
        }
        co_await s.shutdown(); // the end of our stream, no close frame
        for (;;) {
            const std::size_t n = co_await coring::timeout(5s, s.read(std::span(buf))); // throws if never closed
            if (n == 0) break;
            got.append(buf, n);
        }
        eof = true;
        co_return process_result{};
    });
    CHECK(eof);
    const auto fs = frames_after_head(got);
    REQUIRE_FALSE(fs.empty());
    CHECK(fs.front().second == "hi");
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("websocket server - leaving run while a session receives still sends its close frame", "[http][websocket]") {
    // The loop's drain cancels the session and every task it starts from then on: the close frame must still go.
    coring::http::server app;
    add_greeter(app);
    std::vector<int> opcodes;
    std::thread peer;
    // Outside the loop's main task, so that it outlives the serve() the drain cancels.
    auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    coring::run([](coring::http::server& app, coring::tcp_listener& l, std::vector<int>& opcodes,
                   std::thread& peer) -> task<> {
        coring::spawn(app.serve(l)).detach();
        const std::uint16_t port = l.local_address().port();
        peer = std::thread([port, &opcodes] {
            // A plain blocking client on a thread of its own: the loop is about to go.
            const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(port);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
                ::close(fd);
                return;
            }
            const std::string req = "GET /greet HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
            (void)::write(fd, req.data(), req.size());
            std::string got;
            char buf[4096];
            for (;;) {
                const ssize_t n = ::read(fd, buf, sizeof buf);
                if (n <= 0) break;
                got.append(buf, static_cast<std::size_t>(n));
            }
            for (const auto& f : frames_after_head(got)) opcodes.push_back(f.first);
            ::close(fd);
        });
        co_await coring::sleep(300ms);
        co_return; // run() drains: the session is cancelled
    }(app, l, opcodes, peer));
    peer.join();
    REQUIRE(opcodes.size() == 2);
    CHECK(opcodes[0] == 0x1);
    CHECK(opcodes[1] == 0x8);
}

TEST_CASE("websocket server - HEAD is not a handshake, and subprotocols compare exactly", "[http][websocket]") {
    coring::http::server app;
    echo_log log;
    coring::http::websocket_route_options o;
    o.subprotocols = {"Chat"};
    add_echo(app, log, o);
    std::vector<std::string> heads;
    (void)serve_while(app, [&heads](std::uint16_t port) -> task<process_result> {
        const std::string upgrade = "Upgrade: websocket\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n"
                                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        const std::vector<std::string> requests{
            "HEAD /echo HTTP/1.1\r\nHost: x\r\n" + upgrade + "\r\n",
            "GET /echo HTTP/1.1\r\nHost: x\r\n" + upgrade + "Sec-WebSocket-Protocol: chat, Chat\r\n\r\n",
        };
        for (const std::string& req : requests) {
            coring::tcp_stream s = co_await coring::tcp_stream::connect(coring::address::from("127.0.0.1", port));
            co_await s.write_all(req);
            std::string got;
            char buf[2048];
            while (got.find("\r\n\r\n") == std::string::npos) {
                const std::size_t n = co_await coring::timeout(5s, s.read(std::span(buf)));
                if (n == 0) break;
                got.append(buf, n);
            }
            heads.push_back(got.substr(0, got.find("\r\n\r\n")));
            co_await s.close();
        }
        co_return process_result{};
    });
    REQUIRE(heads.size() == 2);
    CHECK(coring_test::contains(heads[0], "HTTP/1.1 400"));
    CHECK(coring_test::contains(heads[1], "HTTP/1.1 101"));                 // Connection split over two lines
    CHECK(coring_test::contains(heads[1], "Sec-WebSocket-Protocol: Chat")); // not "chat", offered first
}

} // namespace test_websocket
