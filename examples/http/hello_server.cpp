// FastAPI's "Hello, World", with coring::http: a route with a path parameter and a JSON-looking reply.
//
//   hello_server [address] [--tls CERT KEY]
//                                address: 127.0.0.1:8080 (the default), [::1]:9000, or a bare port (8080);
//                                port 0 picks a free port. The first line printed is the address it listens on.
//                                --tls: serve HTTPS with the certificate chain CERT (PEM, leaf first) and its key KEY
//
//   curl http://127.0.0.1:8080/                  -> {"message": "Hello, World"}
//   curl http://127.0.0.1:8080/hello/Ada         -> {"message": "Hello, Ada"}
//   curl -d 'some text' http://127.0.0.1:8080/echo
//
// HTTPS, with a certificate for localhost (a self-signed one made with the openssl command here):
//   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost
//       -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout key.pem -out cert.pem       (one line)
//   hello_server 8443 --tls cert.pem key.pem
//   curl --cacert cert.pem https://localhost:8443/hello/Ada
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
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

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

/// The TLS certificate and key files of --tls.
struct tls_files {
    std::string cert, key;
};

task<> main_task(coring::http::server& app, std::string where, std::optional<tls_files> tls) {
    auto stop = coring::wait_signal(SIGINT, SIGTERM); // from here on, the signals wait for us

    coring::listen_options options;
    options.backlog = 4096;
    auto listener = coring::tcp_listener::bind(listen_address(where), options);
#if CORING_HTTP_TLS
    std::optional<coring::tls::context> ctx;
    if (tls) ctx = coring::tls::context::server(tls->cert, tls->key); // tls::error naming the file that is wrong
#else
    if (tls) throw std::runtime_error("--tls: this build has no TLS (coring::tls needs OpenSSL 3)");
#endif
    std::printf("listening on %s://%s\n", tls ? "https" : "http", listener.local_address().to_string().c_str());

    auto stopper = coring::spawn([](coring::http::server& app, coring::signal_awaitable stop) -> task<> {
        const int sig = co_await stop;
        std::printf("stopping on %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        app.shutdown();
    }(app, std::move(stop)));
#if CORING_HTTP_TLS
    if (ctx) {
        co_await app.serve(listener, std::move(*ctx));
        co_return;
    }
#endif
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
    std::string where = "127.0.0.1:8080";
    std::optional<tls_files> tls;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--tls") == 0 && i + 2 < argc) {
            tls = tls_files{argv[i + 1], argv[i + 2]};
            i += 2;
        } else if (argv[i][0] != '-') {
            where = argv[i];
        } else {
            std::fprintf(stderr, "usage: hello_server [address] [--tls CERT KEY]\n");
            return 2;
        }
    }
    try {
        coring::run(main_task(app, where, std::move(tls)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hello_server: %s\n", e.what());
        return 1;
    }
}
