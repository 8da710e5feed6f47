// permessage-deflate (RFC 7692): the negotiation's parser and answers, the codec (context takeover, a reset per
// message, a decompression bomb, broken data), Python's websockets (which compresses by default) as client and as
// server of coring, and the frames a peer must not send once it is agreed.

#include "support/helpers.hpp"
#include "support/http_server_fixture.hpp"
#include "support/peer_process.hpp"

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <catch2/catch.hpp>

#if CORING_HTTP_ZLIB
#include <zlib.h>
#endif

#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace test_websocket_deflate {

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

bool have_websockets() {
    return coring_test::executable("/usr/bin/python3") &&
           std::system("/usr/bin/python3 -c 'import websockets' >/dev/null 2>&1") == 0;
}

/// Text that compresses well, as JSON does, but not to nothing.
std::string json_like(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s;
    while (s.size() < n)
        s += "{\"id\": " + std::to_string(rng() % 100000) +
             ", \"name\": \"item\", \"price\": " + std::to_string(rng() % 1000) + "},";
    s.resize(n);
    return s;
}

/// An echo route that compresses, and what it saw.
struct deflate_log {
    bool compressed = false;
    int messages = 0;
    std::string failure;
};

void add_deflate_echo(coring::http::server& app, deflate_log& log) {
    coring::http::websocket_route_options o;
    o.limits.permessage_deflate = true;
    app.websocket(
        "/echo",
        [&log](request&, websocket& ws) -> task<> {
            log.compressed = ws.compressed();
            try {
                for (;;) {
                    ws_message m = co_await ws.receive();
                    if (m.is_close()) break;
                    ++log.messages;
                    if (m.is_text()) co_await ws.send_text(m.data);
                    else co_await ws.send_binary(m.data);
                }
            } catch (const coring::http::websocket_error& e) {
                log.failure = e.what();
                throw;
            }
        },
        o);
}

} // namespace

TEST_CASE("websocket deflate - offers are parsed, checked and answered as RFC 7692 says", "[http][websocket]") {
    using lines = std::vector<std::string_view>;
    // The plainest offer, and Chromium's.
    auto a = wsd::ws_deflate_accept(lines{"permessage-deflate"});
    REQUIRE(a);
    CHECK(a->second == "permessage-deflate");
    a = wsd::ws_deflate_accept(lines{"permessage-deflate; client_max_window_bits"});
    REQUIRE(a);
    CHECK(a->second == "permessage-deflate");
    CHECK(a->first.client_max_window_bits == 15);
    // Parameters the server must honour are echoed; a quoted value is a value.
    a = wsd::ws_deflate_accept(lines{
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=\"10\""});
    REQUIRE(a);
    CHECK(a->second ==
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10");
    CHECK(a->first.server_no_context_takeover);
    CHECK(a->first.server_max_window_bits == 10);
    // An offer the server cannot take is skipped for the next one, across lines too.
    a = wsd::ws_deflate_accept(lines{"x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16",
                                     "permessage-deflate; client_max_window_bits=12"});
    REQUIRE(a);
    CHECK(a->first.client_max_window_bits == 12);
    // Nothing acceptable, or a list that does not parse: no extension.
    for (std::string_view bad : {"permessage-deflate; server_max_window_bits", "permessage-deflate; foo",
                                 "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                                 "permessage-deflate; server_no_context_takeover=1", "permessage-deflate; x=\"open",
                                 "permessage-deflate; server_max_window_bits=7", "; permessage-deflate", "foo-ext"}) {
        INFO(bad);
        CHECK_FALSE(wsd::ws_deflate_accept(lines{bad}));
    }
    // The client's view of an answer: one permessage-deflate whose values it can keep.
    auto c = wsd::ws_deflate_check_answer(lines{"permessage-deflate; client_max_window_bits=9"});
    REQUIRE(c);
    CHECK(c->client_max_window_bits == 9);
    CHECK_FALSE(wsd::ws_deflate_check_answer(lines{"permessage-deflate; client_max_window_bits"})); // needs a value
    CHECK_FALSE(wsd::ws_deflate_check_answer(lines{"permessage-deflate, permessage-deflate"}));
    CHECK_FALSE(wsd::ws_deflate_check_answer(lines{"x-other"}));
}

TEST_CASE("websocket deflate - the codec keeps its context, resets when agreed, and refuses bombs and garbage",
          "[http][websocket]") {
    if (!wsd::ws_deflate_available) {
        WARN("coring was built without zlib: skipped");
        return;
    }
    for (bool no_takeover : {false, true}) {
        INFO("server_no_context_takeover " << no_takeover);
        wsd::ws_deflate_params p;
        p.server_no_context_takeover = no_takeover;
        wsd::ws_deflate server(p, true), client(p, false);
        std::size_t second_size = 0;
        for (int i = 0; i < 3; ++i) {
            const std::string msg = json_like(4000, 7); // the same message each time
            std::string wire;
            server.compress(msg, wire);
            CHECK(wire.size() < msg.size() / 2);
            if (i == 1) second_size = wire.size();
            std::string back;
            REQUIRE(client.decompress(wire, back, 1u << 20) == wsd::ws_deflate::inflated::ok);
            CHECK(back == msg);
        }
        // With the context kept, a repeated message is mostly a back-reference: far smaller the second time.
        std::string first;
        wsd::ws_deflate fresh(p, true);
        fresh.compress(json_like(4000, 7), first);
        if (no_takeover) CHECK(second_size == first.size());
        else CHECK(second_size < first.size() / 4);
    }
    wsd::ws_deflate_params p;
    wsd::ws_deflate a(p, true), b(p, false);
    // A bomb: 64 MiB of zeros compress to about 64 KiB; inflating stops at the limit.
    std::string bomb;
    a.compress(std::string(64u << 20, '\0'), bomb);
    CHECK(bomb.size() < (64u << 20) / 200); // over 200 to 1
    std::string out;
    CHECK(b.decompress(bomb, out, 1u << 20) == wsd::ws_deflate::inflated::too_big);
    CHECK(out.size() <= (1u << 20) + 1);
    wsd::ws_deflate c(p, false);
    CHECK(c.decompress("\xff\xff\xff\xff garbage", out, 1u << 20) == wsd::ws_deflate::inflated::bad_data);
    // No data at all, and data cut short, do not end at a block boundary: refused, not taken for a message.
    wsd::ws_deflate d(p, false);
    CHECK(d.decompress("", out, 1u << 20) == wsd::ws_deflate::inflated::bad_data);
    std::string whole;
    wsd::ws_deflate(p, true).compress(json_like(4000, 9), whole);
    wsd::ws_deflate e(p, false);
    CHECK(e.decompress(std::string_view(whole).substr(0, whole.size() / 2), out, 1u << 20) ==
          wsd::ws_deflate::inflated::bad_data);

    // A message compressed and then not sent (its frame could not be queued): after reset_compressor() the next one
    // refers to nothing the peer did not get.
    wsd::ws_deflate sender(p, true), receiver(p, false);
    std::string m0, m1, m2;
    sender.compress(std::string(3000, 'a'), m0);
    sender.compress(std::string(3000, 'b'), m1); // dropped
    sender.reset_compressor();
    sender.compress(std::string(3000, 'b') + std::string(3000, 'a'), m2);
    REQUIRE(receiver.decompress(m0, out, 1u << 20) == wsd::ws_deflate::inflated::ok);
    REQUIRE(receiver.decompress(m2, out, 1u << 20) == wsd::ws_deflate::inflated::ok);
    CHECK(out == std::string(3000, 'b') + std::string(3000, 'a'));

#if CORING_HTTP_ZLIB
    // A peer may end a message with a final block (section 7.2.3.4): the next message is a new stream, which may
    // still refer to the window (context takeover).
    const std::string first = json_like(3000, 11);
    std::string finished_msg(8192, '\0');
    {
        z_stream z{};
        REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(first.data()));
        z.avail_in = static_cast<uInt>(first.size());
        z.next_out = reinterpret_cast<Bytef*>(finished_msg.data());
        z.avail_out = static_cast<uInt>(finished_msg.size());
        REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
        finished_msg.resize(finished_msg.size() - z.avail_out);
        deflateEnd(&z);
    }
    std::string next_msg(8192, '\0');
    {
        z_stream z{};
        REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
        REQUIRE(deflateSetDictionary(&z, reinterpret_cast<const Bytef*>(first.data()),
                                     static_cast<uInt>(first.size())) == Z_OK);
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(first.data()));
        z.avail_in = static_cast<uInt>(first.size());
        z.next_out = reinterpret_cast<Bytef*>(next_msg.data());
        z.avail_out = static_cast<uInt>(next_msg.size());
        REQUIRE(deflate(&z, Z_SYNC_FLUSH) == Z_OK);
        next_msg.resize(next_msg.size() - z.avail_out);
        deflateEnd(&z);
        REQUIRE(next_msg.size() > 4);
        next_msg.resize(next_msg.size() - 4); // the 00 00 FF FF tail, as a sender strips it
    }
    CHECK(next_msg.size() < finished_msg.size() / 4); // it does refer to the window
    wsd::ws_deflate f(p, false);
    REQUIRE(f.decompress(finished_msg, out, 1u << 20) == wsd::ws_deflate::inflated::ok);
    CHECK(out == first);
    REQUIRE(f.decompress(next_msg, out, 1u << 20) == wsd::ws_deflate::inflated::ok);
    CHECK(out == first);
#endif
    // Window bits 8 cannot be made by zlib's raw deflate: such a peer gets everything uncompressed.
    wsd::ws_deflate_params eight;
    eight.server_max_window_bits = 8;
    CHECK_FALSE(wsd::ws_deflate(eight, true).can_compress());
    CHECK(wsd::ws_deflate(eight, false).can_compress());
}

TEST_CASE("websocket deflate - Python's websockets client compresses with coring, and coring with it",
          "[http][websocket][peers]") {
    if (!wsd::ws_deflate_available || !have_websockets()) {
        WARN("zlib or python3-websockets is missing: skipped");
        return;
    }
    const int fds = coring_test::open_fds();
    deflate_log log;
    coring::http::server app;
    add_deflate_echo(app, log);
    const process_result r = coring_test::serve_while(app, [](std::uint16_t port) -> task<process_result> {
        // websockets offers permessage-deflate by default; the second client asks for no context takeover both ways
        // and a small server window.
        const std::string script = R"PY(
import asyncio, random, sys
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
async def talk(ext):
    async with websockets.connect(sys.argv[1], extensions=ext, max_size=None) as ws:
        out = [",".join(e.name for e in ws.extensions)]
        random.seed(3)
        text = "".join(random.choice(["alpha ", "beta ", "gamma ", "\u00e9t\u00e9 "]) for _ in range(50000))
        for i in range(5):
            await ws.send(text[i:])
            assert await ws.recv() == text[i:]
        await ws.send(b"\x00\x01" * 100000)
        assert await ws.recv() == b"\x00\x01" * 100000
        await ws.send("short")
        out.append(await ws.recv())
        await ws.close()
    return "/".join(out)
async def main():
    a = await talk(None)
    b = await talk([ClientPerMessageDeflateFactory(server_no_context_takeover=True, client_no_context_takeover=True,
                                                   server_max_window_bits=10)])
    print(a + "|" + b)
asyncio.run(main())
)PY";
        child_process py({"/usr/bin/python3", "-c", script, "ws://127.0.0.1:" + std::to_string(port) + "/echo"});
        co_return co_await finished(py, 30s);
    });
    INFO(r.describe());
    REQUIRE(r.succeeded());
    CHECK(r.out == "permessage-deflate/short|permessage-deflate/short\n");
    CHECK(log.compressed);
    CHECK(log.messages == 14); // 7 from each client
    CHECK(log.failure.empty());
    CHECK(coring_test::open_fds() == fds);

    // coring's client against websockets' server (compression on there by default).
    std::vector<std::string> got;
    {
        const std::string script = R"PY(
import asyncio, websockets
async def echo(ws, path=None):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
)PY";
        coring_test::peer_server srv = coring_test::start_peer({"/usr/bin/python3", "-c", script});
        coring::run([](std::uint16_t port, std::vector<std::string>& got) -> task<> {
            coring::http::client c;
            coring::http::websocket_client_options o;
            o.limits.permessage_deflate = true;
            task<websocket> opening = c.websocket("ws://127.0.0.1:" + std::to_string(port) + "/", o);
            websocket ws = co_await std::move(opening);
            got.push_back(ws.compressed() ? "compressed" : "plain");
            for (int i = 0; i < 5; ++i) {
                const std::string text = json_like(100000, static_cast<unsigned>(i % 2));
                co_await ws.send_text(text);
                ws_message m = co_await ws.receive();
                got.push_back(m.data == text ? "same" : "different");
            }
            co_await ws.close();
        }(srv.port, got));
    }
    CHECK(got == std::vector<std::string>{"compressed", "same", "same", "same", "same", "same"});
}

TEST_CASE("websocket deflate - coring to coring, and what a peer may not send once it is agreed", "[http][websocket]") {
    if (!wsd::ws_deflate_available) {
        WARN("coring was built without zlib: skipped");
        return;
    }
    deflate_log log;
    coring::http::server app;
    add_deflate_echo(app, log);
    coring::http::server plain_app; // a route that does not compress: the client's offer is declined
    deflate_log plain_log;
    plain_app.websocket("/echo", [&plain_log](request&, websocket& ws) -> task<> {
        plain_log.compressed = ws.compressed();
        ws_message m = co_await ws.receive();
        co_await ws.send_text(m.data);
        (void)co_await ws.receive();
    });
    std::vector<std::string> got;
    coring_test::serve_while(app, [&got](std::uint16_t port) -> task<int> {
        coring::http::client c;
        coring::http::websocket_client_options o;
        o.limits.permessage_deflate = true;
        o.limits.deflate_threshold = 0; // everything compressed, even an empty message
        task<websocket> opening = c.websocket("ws://127.0.0.1:" + std::to_string(port) + "/echo", o);
        websocket ws = co_await std::move(opening);
        got.push_back(ws.compressed() ? "compressed" : "plain");
        // An empty message after others too: a sync flush of nothing would be no bytes, which no peer can read.
        const std::vector<std::string> texts{std::string(),        std::string("a"), json_like(300000, 1),
                                             json_like(300000, 1), std::string(),    std::string("hello")};
        for (const std::string& text : texts) {
            co_await ws.send_text(text);
            ws_message m = co_await ws.receive();
            got.push_back(m.data == text ? "same" : "different");
        }
        co_await ws.close();
        co_return 0;
    });
    CHECK(got == std::vector<std::string>{"compressed", "same", "same", "same", "same", "same", "same"});
    CHECK(log.compressed);
    got.clear();
    coring_test::serve_while(plain_app, [&got](std::uint16_t port) -> task<int> {
        coring::http::client c;
        coring::http::websocket_client_options o;
        o.limits.permessage_deflate = true;
        task<websocket> opening = c.websocket("ws://127.0.0.1:" + std::to_string(port) + "/echo", o);
        websocket ws = co_await std::move(opening);
        got.push_back(ws.compressed() ? "compressed" : "plain");
        const std::string text = json_like(1000, 2);
        co_await ws.send_text(text);
        ws_message m = co_await ws.receive();
        got.push_back(m.data == text ? "same" : "different");
        co_await ws.close();
        co_return 0;
    });
    CHECK(got == std::vector<std::string>{"plain", "same"});
    CHECK_FALSE(plain_log.compressed);

    // Hostile frames on a compressing connection, from a raw client: RSV1 on a continuation or a control frame is a
    // protocol error, data that does not inflate is 1007, a bomb over max_message is 1009.
    struct bad {
        const char* what;
        std::string frames;
        int code;
    };
    const auto masked = [](std::uint8_t b0, std::string_view payload) {
        std::string f;
        f.push_back(static_cast<char>(b0));
        if (payload.size() < 126) {
            f.push_back(static_cast<char>(0x80 | payload.size()));
        } else if (payload.size() <= 0xFFFF) {
            f.push_back(static_cast<char>(0x80 | 126));
            f.push_back(static_cast<char>(payload.size() >> 8));
            f.push_back(static_cast<char>(payload.size() & 0xFF));
        } else {
            f.push_back(static_cast<char>(0x80 | 127));
            for (int shift = 56; shift >= 0; shift -= 8)
                f.push_back(static_cast<char>((static_cast<std::uint64_t>(payload.size()) >> shift) & 0xFF));
        }
        const char key[4] = {0x11, 0x22, 0x33, 0x44};
        f.append(key, 4);
        for (std::size_t i = 0; i < payload.size(); ++i) f.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
        return f;
    };
    std::string bomb;
    {
        wsd::ws_deflate z(wsd::ws_deflate_params{}, false);
        z.compress(std::string(20u << 20, 'z'), bomb); // 20 MiB inflated, over the default 16 MiB max_message
    }
    const std::vector<bad> cases{
        {"RSV1 on a continuation", masked(0x41, "a") + masked(0xC0, "b"), 1002},
        {"RSV1 on a ping", masked(0xC9, "p"), 1002},
        {"RSV2", masked(0xA1, "x"), 1002},
        {"data that does not inflate", masked(0xC1, "\xff\xff\xff\xff not deflate"), 1007},
        {"a bomb", masked(0xC2, bomb), 1009},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        deflate_log hostile_log;
        coring::http::server hostile_app; // a server serves once: shutdown() is for good
        add_deflate_echo(hostile_app, hostile_log);
        std::string got_bytes;
        coring_test::serve_while(hostile_app, [&](std::uint16_t port) -> task<int> {
            coring::tcp_stream s = co_await coring::tcp_stream::connect(coring::address::from("127.0.0.1", port));
            const std::string req = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                                    "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
            co_await s.write_all(req);
            try {
                co_await s.write_all(c.frames);
            } catch (const std::system_error&) {} // the server may close before it has read everything
            char buf[4096];
            for (;;) {
                const std::size_t n = co_await coring::timeout(5s, s.read(std::span(buf)));
                if (n == 0) break;
                got_bytes.append(buf, n);
            }
            co_return 0;
        });
        CHECK(coring_test::contains(got_bytes, "Sec-WebSocket-Extensions: permessage-deflate\r\n"));
        const std::size_t head_end = got_bytes.find("\r\n\r\n");
        REQUIRE(head_end != std::string::npos);
        std::string_view rest = std::string_view(got_bytes).substr(head_end + 4);
        int code = 0;
        wsd::ws_frame_header h;
        while (wsd::ws_parse_header(rest, h) && rest.size() >= h.header_size + h.length) {
            const std::string_view body = rest.substr(h.header_size, static_cast<std::size_t>(h.length));
            if (h.opcode == 0x8 && body.size() >= 2)
                code = (static_cast<unsigned char>(body[0]) << 8) | static_cast<unsigned char>(body[1]);
            rest.remove_prefix(h.header_size + static_cast<std::size_t>(h.length));
        }
        CHECK(code == c.code);
    }
}

} // namespace test_websocket_deflate
