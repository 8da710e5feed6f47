// Fetch one URL and print the response: status line, headers and the page (the seeds' fetch_url).
//
//   fetch [--cacert FILE] URL          URL: http:// or https://; --cacert: also trust the CA certificates in FILE
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
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--cacert") == 0 && i + 1 < argc) {
            cacert = argv[++i];
        } else if (argv[i][0] != '-' && url.empty()) {
            url = argv[i];
        } else {
            url.clear();
            break;
        }
    }
    if (url.empty()) {
        std::fprintf(stderr, "usage: fetch [--cacert FILE] URL    (for example: fetch https://example.com/)\n");
        return 2;
    }
    try {
        coring::run(fetch(url, cacert));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fetch: %s\n", e.what());
        if (const char* h = hint(e.what())) std::fprintf(stderr, "fetch: %s\n", h);
        return 1;
    }
}
