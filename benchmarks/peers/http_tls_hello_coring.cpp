// HTTPS keep-alive hello world with coring::http over coring::tls, the twin of the nginx server block in
// benchmarks/compare/tls_vs_nginx.py (`return 200 "Hello, World!"`, text/plain), which runs `wrk -t1 -c64` against
// both:
//
//   http_tls_hello_coring CERT KEY [PORT]
//
// PORT defaults to $PORT, then 8443; it listens on 127.0.0.1 (backlog 4096) with the default server options and
// prints "listening on https://127.0.0.1:P". SIGTERM or SIGINT stops it (app.shutdown()).
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#if CORING_HTTP_TLS
#include <coring/tls.hpp>

namespace {

coring::task<> main_task(coring::http::server& app, std::string cert, std::string key, std::string port) {
    auto stop = coring::wait_signal(SIGINT, SIGTERM);
    coring::tls::context ctx = coring::tls::context::server(cert, key);
    coring::listen_options options;
    options.backlog = 4096;
    auto listener = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:" + port), options);
    std::printf("listening on https://%s\n", listener.local_address().to_string().c_str());
    auto stopper = coring::spawn([](coring::http::server& app, coring::signal_awaitable stop) -> coring::task<> {
        co_await stop;
        app.shutdown();
    }(app, std::move(stop)));
    co_await app.serve(listener, ctx);
}

} // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s CERT KEY [PORT]\n", argv[0]);
        return 2;
    }
    const char* env_port = std::getenv("PORT");
    const std::string port = argc > 3 ? argv[3] : env_port ? env_port : "8443";
    coring::http::server app;
    app.get("/", [](coring::http::request&) -> coring::task<coring::http::response> {
        co_return coring::http::response::text("Hello, World!");
    });
    try {
        coring::run(main_task(app, argv[1], argv[2], port));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "http_tls_hello_coring: %s\n", e.what());
        return 1;
    }
}

#else

int main() {
    std::fprintf(stderr, "http_tls_hello_coring: coring::http was built without TLS (CORING_HTTP_TLS)\n");
    return 2;
}

#endif
