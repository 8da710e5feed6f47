// libFuzzer target: WebSocket frames into coring::http::server. Each input follows a valid opening handshake on one
// end of a socketpair whose other end the server serves (server::serve_stream) with an echoing WebSocket route, in
// pieces; the target reads everything the server answers until it closes. Checks: no crash, no sanitizer report, no
// hang (the loop run is bounded), the answer is a 101, and every frame the server sent after it is well formed
// (unmasked, control frames short and whole, close codes a peer may send).
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace std::chrono_literals;
using coring::task;
using coring::http::request;
using coring::http::websocket;
namespace wsd = coring::http::detail;

struct world {
    coring::event_loop loop;
    coring::http::server app;
    world() {
        coring::http::websocket_route_options o;
        o.limits.max_frame = 4096;
        o.limits.max_message = 8192;
        o.limits.close_timeout = 200ms;
        app.websocket("/ws", echo, o);
        // The same with permessage-deflate, so that compressed frames (RSV1) reach the inflater too.
        if (coring::http::detail::ws_deflate_available) {
            o.limits.permessage_deflate = true;
            o.limits.deflate_threshold = 16;
            app.websocket("/wsz", echo, o);
        }
    }
    static task<> echo(request&, websocket& ws) {
        for (;;) {
            coring::http::ws_message m = co_await ws.receive();
            if (m.is_close()) break;
            if (m.is_text()) co_await ws.send_text(m.data);
            else co_await ws.send_binary(m.data);
        }
    }
};

const std::string handshake = "GET /ws HTTP/1.1\r\nHost: f\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
// An input whose first byte has its top bit set goes to the compressing route.
const std::string handshake_deflate = "GET /wsz HTTP/1.1\r\nHost: f\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                                      "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

task<> client(int fd, const std::uint8_t* data, std::size_t size, std::string& answer) {
    coring::tcp_stream s(fd);
    std::size_t pos = 0;
    const std::size_t step = 1 + (size ? data[0] % 61 : 0);
    try {
        const bool deflate = size > 0 && (data[0] & 0x80) != 0 && coring::http::detail::ws_deflate_available;
        const std::string& opening = deflate ? handshake_deflate : handshake;
        co_await s.write_all(opening);
        while (pos < size) {
            const std::size_t n = std::min(step, size - pos);
            co_await s.write_all(std::string_view(reinterpret_cast<const char*>(data) + pos, n));
            pos += n;
        }
        co_await s.shutdown();
    } catch (const std::system_error&) {
        // The server closed early (a protocol error): fine.
    }
    char buf[4096];
    for (;;) {
        std::size_t n = 0;
        try {
            n = co_await coring::timeout(5s, s.read(std::span(buf)));
        } catch (const std::system_error&) {
            break;
        }
        if (n == 0) break;
        answer.append(buf, n);
    }
}

/// Aborts unless `answer` is a 101 followed by well-formed server frames; on the compressing route, its compressed
/// messages must inflate.
void check(const std::string& answer, bool deflate) {
    if (answer.rfind("HTTP/1.1 101 ", 0) != 0) std::abort();
    const std::size_t head_end = answer.find("\r\n\r\n");
    if (head_end == std::string::npos) std::abort();
    std::string_view rest = std::string_view(answer).substr(head_end + 4);
    wsd::ws_frame_header h;
    wsd::ws_deflate inflater(wsd::ws_deflate_params{}, false);
    while (!rest.empty()) {
        if (!wsd::ws_parse_header(rest, h)) std::abort();
        if (h.masked || !wsd::ws_is_known(h.opcode)) std::abort();
        const bool rsv1_ok = deflate && !wsd::ws_is_control(h.opcode) && h.opcode != 0;
        if ((h.rsv & 0x3) != 0 || ((h.rsv & 0x4) != 0 && !rsv1_ok)) std::abort();
        if (wsd::ws_is_control(h.opcode) && (!h.fin || h.length > 125)) std::abort();
        if (rest.size() < h.header_size + h.length) std::abort(); // a frame cut short
        if ((h.rsv & 0x4) != 0) {
            std::string plain;
            const std::string_view body = rest.substr(h.header_size, static_cast<std::size_t>(h.length));
            if (inflater.decompress(body, plain, 1u << 20) != wsd::ws_deflate::inflated::ok) std::abort();
        }
        if (h.opcode == 0x8 && h.length >= 2) {
            const unsigned code = (static_cast<unsigned char>(rest[h.header_size]) << 8) |
                                  static_cast<unsigned char>(rest[h.header_size + 1]);
            if (!wsd::ws_valid_close_code(code)) std::abort();
        }
        rest.remove_prefix(h.header_size + static_cast<std::size_t>(h.length));
    }
}

task<> one_input(coring::http::server& app, const std::uint8_t* data, std::size_t size) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) std::abort();
    std::string answer;
    auto serving = coring::spawn(app.serve_stream(coring::tcp_stream(sv[0])));
    co_await client(sv[1], data, size, answer);
    co_await serving;
    check(answer, size > 0 && (data[0] & 0x80) != 0 && coring::http::detail::ws_deflate_available);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static world w;
    w.loop.run(one_input(w.app, data, size));
    return 0;
}
