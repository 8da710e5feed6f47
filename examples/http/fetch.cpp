// Fetch one URL and print the response: status line, headers and the page (the seeds' fetch_url).
//
//   fetch [--cacert FILE] URL          URL: http:// or https://; --cacert: also trust the CA certificates in FILE
//   fetch --local                      start an HTTPS server on 127.0.0.1 (a certificate from a CA made in memory
//                                      at start-up, demo_pki.hpp) and fetch its page, trusting only that CA
//
//   fetch https://example.com/
//
// https:// is verified as a browser would: the certificate chain against the system's trust store (plus --cacert's),
// the host name against the certificate. The asyncio program it mirrors:
//
//   async with aiohttp.ClientSession() as session:
//       async with session.get(url) as response:
//           print(response.status, response.headers)
//           print(await response.text())
//
// Exits 0 for any answer (a 404 is an answer), 1 when there is none (no network, a certificate that does not
// verify, a timeout), with the reason on stderr.
#include "demo_pki.hpp"

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

using coring::task;

namespace {

task<> print_response(coring::http::client_options options, std::string url);

task<> fetch(std::string url, std::string cacert) {
    coring::http::client_options options;
    options.timeout = std::chrono::seconds(30);
#if CORING_HTTP_TLS
    if (!cacert.empty()) {
        options.tls = coring::tls::context::client(); // the system's store, and:
        options.tls->load_ca(cacert);                 // tls::error naming the file when it holds no certificate
    }
#else
    if (!cacert.empty()) throw std::runtime_error("--cacert: this build has no TLS (coring::tls needs OpenSSL 3)");
#endif
    co_await print_response(std::move(options), std::move(url));
}

/// `fetch --local`: the same, against an HTTPS server of its own, verified against a CA it has just made.
task<> fetch_local() {
#if CORING_HTTP_TLS
    coring::http::server app;
    app.get("/", [](coring::http::request&) -> task<coring::http::response> {
        co_return coring::http::response::text("Hello over HTTPS, from a server coring started on 127.0.0.1\n");
    });
    auto listener = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    const demo::pki pki = demo::make_pki();
    auto serving =
        coring::spawn(app.serve(listener, coring::tls::context::server_from_memory(pki.leaf_cert, pki.leaf_key)));
    coring::http::client_options options;
    options.tls = coring::tls::context::client();
    options.tls->load_ca_pem(pki.ca_cert);
    const std::string url = "https://" + listener.local_address().to_string() + "/";
    std::printf("GET %s (its certificate signed by a CA made just now)\n", url.c_str());
    task<> fetching = print_response(std::move(options), url);
    co_await std::move(fetching);
    app.shutdown();
    co_await serving;
#else
    throw std::runtime_error("--local serves HTTPS: this build has no TLS (coring::tls needs OpenSSL 3)");
    co_return;
#endif
}

task<> print_response(coring::http::client_options options, std::string url) {
    coring::http::client client(std::move(options));
    coring::http::client_stream r = co_await client.open("GET", std::move(url));
    std::printf("HTTP/1.%d %d %.*s\n", r.version_minor(), r.status(), static_cast<int>(r.reason().size()),
                r.reason().data());
    for (const coring::http::field& f : r.headers()) std::printf("%s: %s\n", f.name.c_str(), f.value.c_str());
    std::printf("\n");
    // The body as it arrives, whatever its size.
    for (;;) {
        std::string piece = co_await r.read_some();
        if (piece.empty()) break;
        std::fwrite(piece.data(), 1, piece.size(), stdout);
    }
    std::fflush(stdout);
    co_await client.close();
}

/// A hint after the error, for the failures a first try most often meets.
const char* hint(std::string_view what) {
    if (what.find("certificate verify failed") != std::string_view::npos)
        return "the server's certificate is not trusted here: is the system's CA bundle installed (Debian: "
               "ca-certificates), or is it signed by a private CA (pass it with --cacert FILE)?";
    if (what.find("resolve") != std::string_view::npos || what.find("unreachable") != std::string_view::npos ||
        what.find("timed out") != std::string_view::npos)
        return "is this machine connected to the internet (or behind a proxy, which coring does not use)?";
    return nullptr;
}

} // namespace

int main(int argc, char** argv) {
    std::string url, cacert;
    bool local = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--local") == 0) {
            local = true;
        } else if (std::strcmp(argv[i], "--cacert") == 0 && i + 1 < argc) {
            cacert = argv[++i];
        } else if (argv[i][0] != '-' && url.empty()) {
            url = argv[i];
        } else {
            url.clear();
            break;
        }
    }
    if (url.empty() == !local) {
        std::fprintf(stderr, "usage: fetch [--cacert FILE] URL    (for example: fetch https://example.com/)\n"
                             "       fetch --local                (HTTPS to a server it starts on 127.0.0.1)\n");
        return 2;
    }
    try {
        if (local) coring::run(fetch_local());
        else coring::run(fetch(url, cacert));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fetch: %s\n", e.what());
        if (const char* h = hint(e.what())) std::fprintf(stderr, "fetch: %s\n", h);
        return 1;
    }
}
