// Fetch many URLs with a bounded number in flight, reporting progress and totals (the seeds' "many requests at once").
//
//   crawler [--concurrency N] URL...     fetch the given http:// and https:// URLs (https verified against the
//                                        system's trust store)
//   crawler [--concurrency N] --local P [--tls]
//                                        start a local site of P pages (each linking to nothing, 2-20 KiB, some
//                                        slow, some missing) and fetch all of it: runs anywhere, no network needed;
//                                        --tls: the site speaks HTTPS, with a certificate from a CA made in memory at
//                                        start-up that the crawler trusts (demo_pki.hpp)
//
// Defaults: --concurrency 16, --local 500. Each URL is fetched once; the program prints a progress line every 10% and
// at the end the count by status, the bytes, the time and the requests per second. A failed fetch (refused, timed
// out, malformed answer) is reported on stderr with its URL and counted; it never stops the crawl.
#include <coring/coring.hpp>
#include <coring/http.hpp>
#if CORING_HTTP_TLS
#include "demo_pki.hpp"
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using coring::task;
using coring::http::request;
using coring::http::response;
using clk = std::chrono::steady_clock;
using join_handle = coring::join_handle<void>;

namespace {

struct totals {
    std::size_t done = 0, failed = 0, bytes = 0, total = 0;
    std::map<int, std::size_t> by_status;
    std::size_t next_report = 1;
};

// One fetch, holding one of the semaphore's permits while it runs.
task<> fetch_one(coring::http::client& c, coring::semaphore& slots, std::string url, totals& t) {
    co_await slots.acquire();
    try {
        coring::http::client_response r = co_await c.get(url);
        ++t.by_status[r.status];
        t.bytes += r.body.size();
    } catch (const coring::cancelled_error&) {
        slots.release();
        throw; // stopping the crawl is not a failed fetch
    } catch (const std::exception& e) {
        ++t.failed;
        std::fprintf(stderr, "crawler: %s\n", e.what());
    }
    slots.release();
    ++t.done;
    if (t.done * 10 >= t.next_report * t.total) {
        std::printf("  %3zu%%  %zu/%zu fetched\n", t.done * 100 / t.total, t.done, t.total);
        while (t.next_report * t.total <= t.done * 10) ++t.next_report;
    }
}

task<totals> crawl(std::vector<std::string> urls, std::size_t concurrency, coring::http::client_options o) {
    o.timeout = std::chrono::seconds(10);
    coring::http::client c(std::move(o));
    coring::semaphore slots(static_cast<std::ptrdiff_t>(concurrency));
    totals t;
    t.total = urls.size();
    std::vector<task<>> fetches;
    fetches.reserve(urls.size());
    for (std::string& u : urls) fetches.push_back(fetch_one(c, slots, std::move(u), t));
    co_await coring::gather(std::move(fetches));
    co_await c.close();
    co_return t;
}

// The local site: /page/{n} answers 2-20 KiB; every 7th page takes 50 ms; every 50th does not exist.
void add_site(coring::http::server& app) {
    app.get("/page/{n}", [](request& r) -> task<response> {
        const long n = std::strtol(r.param("n").c_str(), nullptr, 10);
        if (n % 50 == 49) co_return response::text("no such page\n", 404);
        if (n % 7 == 0) co_await coring::sleep(std::chrono::milliseconds(50));
        co_return response::html("<html><body>" + std::string(2048 + static_cast<std::size_t>(n % 10) * 2048, 'x') +
                                 "</body></html>");
    });
}

task<totals> main_task(std::vector<std::string> urls, std::size_t concurrency, std::size_t local_pages, bool tls) {
    coring::http::client_options options;
    if (local_pages == 0) co_return co_await crawl(std::move(urls), concurrency, std::move(options));
    coring::http::server app;
    add_site(app);
    auto listener = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    const std::string base = (tls ? "https://" : "http://") + listener.local_address().to_string();
    std::printf("local site of %zu pages on %s\n", local_pages, base.c_str());
    std::optional<join_handle> serving;
#if CORING_HTTP_TLS
    if (tls) {
        // A CA made just now signs the site's certificate; the crawler trusts that CA (and the system's).
        const demo::pki pki = demo::make_pki();
        options.tls = coring::tls::context::client();
        options.tls->load_ca_pem(pki.ca_cert);
        serving.emplace(
            coring::spawn(app.serve(listener, coring::tls::context::server_from_memory(pki.leaf_cert, pki.leaf_key))));
    }
#endif
    if (!serving) serving.emplace(coring::spawn(app.serve(listener)));
    for (std::size_t i = 0; i < local_pages; ++i) urls.push_back(base + "/page/" + std::to_string(i));
    task<totals> crawling = crawl(std::move(urls), concurrency, std::move(options));
    totals t = co_await std::move(crawling);
    app.shutdown();
    co_await *serving;
    co_return t;
}

bool parse_count(const char* s, std::size_t& out) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (!end || *end || v <= 0 || v > 1000000) return false;
    out = static_cast<std::size_t>(v);
    return true;
}

} // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::size_t concurrency = 16, local_pages = 0;
    bool tls = false;
    std::vector<std::string> urls;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--concurrency") == 0 && i + 1 < argc) {
            if (!parse_count(argv[++i], concurrency)) {
                std::fprintf(stderr, "crawler: --concurrency needs a number from 1 to 1000000\n");
                return 2;
            }
        } else if (std::strcmp(argv[i], "--local") == 0 && i + 1 < argc) {
            if (!parse_count(argv[++i], local_pages)) {
                std::fprintf(stderr, "crawler: --local needs a number of pages from 1 to 1000000\n");
                return 2;
            }
        } else if (std::strcmp(argv[i], "--tls") == 0) {
#if CORING_HTTP_TLS
            tls = true;
#else
            std::fprintf(stderr, "crawler: --tls: this build has no TLS (coring::tls needs OpenSSL 3)\n");
            return 2;
#endif
        } else if (argv[i][0] == '-') {
            std::fprintf(stderr, "usage: crawler [--concurrency N] (URL... | --local PAGES [--tls])\n");
            return 2;
        } else {
            urls.emplace_back(argv[i]);
        }
    }
    if (urls.empty() && local_pages == 0) local_pages = 500;
    if (tls && local_pages == 0) {
        std::fprintf(stderr, "crawler: --tls is for the local site (--local PAGES); https:// URLs need no option\n");
        return 2;
    }
    try {
        const auto t0 = clk::now();
        const totals t = coring::run(main_task(std::move(urls), concurrency, local_pages, tls));
        const double s = std::chrono::duration<double>(clk::now() - t0).count();
        std::printf("\nfetched %zu URLs in %.3f s (%.0f requests/s, %zu in flight at most), %.1f MiB\n", t.total, s,
                    static_cast<double>(t.total) / s, concurrency, static_cast<double>(t.bytes) / (1024.0 * 1024.0));
        for (const auto& [status, n] : t.by_status) std::printf("  HTTP %d: %zu\n", status, n);
        if (t.failed) std::printf("  failed: %zu\n", t.failed);
        return t.failed ? 1 : 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "crawler: %s\n", e.what());
        return 1;
    }
}
