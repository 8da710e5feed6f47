// FastAPI's "Hello, World", with coring::http: a route with a path parameter and a JSON-looking reply.
//
//   hello_server [address]       address: 127.0.0.1:8080 (the default), [::1]:9000, or a bare port (8080);
//                                port 0 picks a free port. The first line printed is the address it listens on.
//
//   curl http://127.0.0.1:8080/                  -> {"message": "Hello, World"}
//   curl http://127.0.0.1:8080/hello/Ada         -> {"message": "Hello, Ada"}
//   curl -d 'some text' http://127.0.0.1:8080/echo
//
// The FastAPI program it mirrors:
//   @app.get("/")                 async def root(): return {"message": "Hello, World"}
//   @app.get("/hello/{name}")     async def hello(name: str): return {"message": f"Hello, {name}"}
//
// Ctrl-C or SIGTERM stops it gracefully: requests in progress finish, idle connections close, then it exits 0.
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

using coring::task;
using coring::http::request;
using coring::http::response;

namespace {

// "8080" means 127.0.0.1:8080; anything else is parsed as an address ("0.0.0.0:80", "[::]:8080").
coring::address listen_address(const std::string& arg) {
    if (arg.find(':') == std::string::npos) return coring::address::parse("127.0.0.1:" + arg);
    return coring::address::parse(arg);
}

// A JSON string literal: quotes, backslashes and control characters escaped.
std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

task<> main_task(coring::http::server& app, std::string where) {
    auto stop = coring::wait_signal(SIGINT, SIGTERM); // from here on, the signals wait for us

    coring::listen_options options;
    options.backlog = 4096;
    auto listener = coring::tcp_listener::bind(listen_address(where), options);
    std::printf("listening on http://%s\n", listener.local_address().to_string().c_str());

    auto stopper = coring::spawn([](coring::http::server& app, coring::signal_awaitable stop) -> task<> {
        const int sig = co_await stop;
        std::printf("stopping on %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        app.shutdown();
    }(app, std::move(stop)));
    co_await app.serve(listener);
}

} // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // line-buffered even into a pipe: scripts read the address at once
    coring::http::server app;
    app.get("/", [](request&) -> task<response> { co_return response::json(R"({"message": "Hello, World"})"); });
    app.get("/hello/{name}", [](request& r) -> task<response> {
        co_return response::json("{\"message\": " + json_string("Hello, " + r.param("name")) + "}");
    });
    app.post("/echo", [](request& r) -> task<response> { co_return response::text(r.body); });
    try {
        coring::run(main_task(app, argc > 1 ? argv[1] : "127.0.0.1:8080"));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hello_server: %s\n", e.what());
        return 1;
    }
}
