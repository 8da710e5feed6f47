// libFuzzer target: the whole request path of coring::http::server. Each input is written, in pieces, into one end
// of a socketpair whose other end the server serves (server::serve_stream) on a real event loop; the test reads
// everything the server answers until it closes. Checks: no crash, no sanitizer report, no hang (the loop run is
// bounded), and every answer starts with a status line.
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

using namespace std::chrono_literals;
using coring::task;
using coring::http::request;
using coring::http::response;

struct world {
    coring::event_loop loop;
    coring::http::server app;
    world() : app(options()) {
        app.get("/", [](request&) -> task<response> { co_return response::text("hello"); });
        app.get("/p/{name}", [](request& r) -> task<response> { co_return response::text(r.param("name")); });
        app.post("/echo", [](request& r) -> task<response> { co_return response::text(r.body); });
        app.get("/stream", [](request&) -> task<response> {
            co_return response::streamed([](coring::http::body_writer& w) -> task<> { co_await w.write("x"); });
        });
    }
    static coring::http::server_options options() {
        coring::http::server_options o;
        o.max_target = 256;
        o.max_header_bytes = 1024;
        o.max_headers = 16;
        o.max_body = 4096;
        o.header_timeout = 2s;
        o.body_timeout = 2s;
        o.idle_timeout = 2s;
        o.on_handler_error = [](const request&, std::exception_ptr) {};
        return o;
    }
};

task<> client(int fd, const std::uint8_t* data, std::size_t size, std::string& answer) {
    coring::tcp_stream s(fd);
    std::size_t pos = 0;
    const std::size_t step = 1 + (size ? data[0] % 97 : 0);
    try {
        while (pos < size) {
            const std::size_t n = std::min(step, size - pos);
            co_await s.write_all(std::string_view(reinterpret_cast<const char*>(data) + pos, n));
            pos += n;
        }
        co_await s.shutdown();
    } catch (const std::system_error&) {
        // The server closed early (an error response): fine.
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

task<> one_input(coring::http::server& app, const std::uint8_t* data, std::size_t size) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) std::abort();
    std::string answer;
    auto serving = coring::spawn(app.serve_stream(coring::tcp_stream(sv[0])));
    co_await client(sv[1], data, size, answer);
    co_await serving;
    if (!answer.empty() && answer.rfind("HTTP/1.", 0) != 0) std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static world w;
    w.loop.run(one_input(w.app, data, size));
    return 0;
}
