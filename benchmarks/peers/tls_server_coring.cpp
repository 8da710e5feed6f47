// A coring TLS server for benchmarks/compare/tls_vs_nginx.py, which runs it beside nginx (1 worker) with the same
// certificate, both pinned to CPU 0:
//
//   tls_server_coring handshake|bulk|idle CERT KEY [PORT] [--file PATH | --bytes N]
//
// PORT defaults to $PORT, then 8443; it listens on 127.0.0.1. The first line printed is "listening on 127.0.0.1:P".
// Every connection gets a task of its own; the server runs until SIGTERM (or SIGINT).
//   handshake  full or resumed handshakes (`openssl s_time -www /`): the TLS handshake, then, if a request head
//              ("...\r\n\r\n") arrives, a one-line HTTP/1.0 answer; then close_notify and close. A client that just
//              closes after the handshake is fine too.
//   bulk       one big response per connection: reads the request head, answers "HTTP/1.1 200 OK" with a
//              Content-Length and the contents of --file PATH (read through coring::file, 256 KiB at a time), or
//              --bytes N of generated data, then closes. The cipher suite is whatever the client allows (the script
//              asks for TLS_AES_128_GCM_SHA256).
//   idle       holds every connection after the handshake with a read pending, as a keep-alive server waiting for
//              the next request does; the script reads this process's VmRSS before and after opening many.
// Errors of single connections (a client that resets, or ends without close_notify) are counted, not printed; on
// SIGTERM it prints "connections=N errors=E".
#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <array>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

enum class mode { handshake, bulk, idle };

struct config {
    mode m = mode::handshake;
    std::string cert, key, file;
    std::uint64_t bytes = 0; // --bytes: generated data
    std::uint16_t port = 8443;
};

struct counters {
    std::uint64_t connections = 0;
    std::uint64_t errors = 0;
};

constexpr std::size_t chunk_size = 256 * 1024;

coring::task<> handshake_only(coring::tls::stream& s) {
    // Until the client closes, or sends a request head (s_time -www): then one short answer.
    std::array<char, 4096> buf;
    std::string head;
    for (;;) {
        const std::size_t n = co_await s.read(std::span<char>(buf));
        if (n == 0) break;
        head.append(buf.data(), n);
        if (head.find("\r\n\r\n") != std::string::npos) {
            co_await s.write_all(std::string_view("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                                                  "Content-Length: 13\r\nConnection: close\r\n\r\nHello, World!"));
            break;
        }
    }
}

coring::task<> bulk(coring::tls::stream& s, const config& cfg) {
    std::string head = co_await s.read_until("\r\n\r\n");
    if (head.empty()) co_return;
    std::optional<coring::file> f;
    std::uint64_t size = cfg.bytes;
    if (!cfg.file.empty()) {
        coring::file opened = co_await coring::file::open(cfg.file, coring::open_mode::read);
        f.emplace(std::move(opened));
        size = co_await f->size();
    }
    std::string reply = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ";
    reply += std::to_string(size);
    reply += "\r\nConnection: close\r\n\r\n";
    co_await s.write_all(reply);
    std::unique_ptr<char[]> buf(new char[chunk_size]);
    if (!f) std::memset(buf.get(), 'x', chunk_size);
    std::uint64_t sent = 0;
    while (sent < size) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size, size - sent));
        if (f) {
            n = co_await f->read_at(std::span<char>(buf.get(), n), sent);
            if (n == 0) break; // the file shrank
        }
        co_await s.write_all(std::string_view(buf.get(), n));
        sent += n;
    }
    if (f) co_await f->close();
}

coring::task<> idle(coring::tls::stream& s) {
    // A keep-alive server between requests: a read pending until the client goes away.
    std::array<char, 64> buf;
    for (;;) {
        const std::size_t n = co_await s.read(std::span<char>(buf));
        if (n == 0) break;
    }
}

coring::task<> connection(coring::tls::context ctx, coring::tcp_stream conn, const config& cfg, counters& c) {
    ++c.connections;
    bool ok = false;
    try {
        coring::tls::stream s = co_await coring::tls::stream::accept(ctx, std::move(conn));
        switch (cfg.m) {
        case mode::handshake:
            co_await handshake_only(s);
            break;
        case mode::bulk:
            co_await bulk(s, cfg);
            break;
        case mode::idle:
            co_await idle(s);
            break;
        }
        co_await s.close();
        ok = true;
    } catch (const coring::cancelled_error&) {
        throw;
    } catch (const std::exception&) {
        // A client that resets or leaves without close_notify (s_time closes that way): counted only.
    }
    if (!ok) ++c.errors;
}

coring::task<> serve(const config& cfg, counters& c) {
    coring::tls::context ctx = coring::tls::context::server(cfg.cert, cfg.key);
    coring::listen_options options;
    options.backlog = 4096;
    coring::tcp_listener listener =
        coring::tcp_listener::bind(coring::address::parse("127.0.0.1:" + std::to_string(cfg.port)), options);
    std::printf("listening on %s\n", listener.local_address().to_string().c_str());
    coring::task_group connections;
    try {
        for (;;) {
            coring::tcp_stream conn = co_await listener.accept();
            conn.set_nodelay(true);
            connections.spawn(connection(ctx, std::move(conn), cfg, c));
        }
    } catch (const coring::cancelled_error&) {}
    co_await connections.join();
}

coring::task<int> main_task(const config& cfg) {
    auto stop = coring::wait_signal(SIGINT, SIGTERM);
    counters c;
    coring::join_handle<void> server = coring::spawn(serve(cfg, c));
    co_await stop;
    server.cancel();
    co_await std::move(server);
    std::printf("connections=%llu errors=%llu\n", static_cast<unsigned long long>(c.connections),
                static_cast<unsigned long long>(c.errors));
    co_return 0;
}

int usage(const char* argv0) {
    std::fprintf(stderr, "usage: %s handshake|bulk|idle CERT KEY [PORT] [--file PATH | --bytes N]\n", argv0);
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // the script waits for the first line
    if (argc < 4) return usage(argv[0]);
    config cfg;
    const std::string_view m = argv[1];
    if (m == "handshake") cfg.m = mode::handshake;
    else if (m == "bulk") cfg.m = mode::bulk;
    else if (m == "idle") cfg.m = mode::idle;
    else return usage(argv[0]);
    cfg.cert = argv[2];
    cfg.key = argv[3];
    if (const char* p = std::getenv("PORT")) cfg.port = static_cast<std::uint16_t>(std::strtoul(p, nullptr, 10));
    for (int i = 4; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--file" && i + 1 < argc) cfg.file = argv[++i];
        else if (a == "--bytes" && i + 1 < argc) cfg.bytes = std::strtoull(argv[++i], nullptr, 10);
        else if (!a.empty() && a[0] != '-') cfg.port = static_cast<std::uint16_t>(std::strtoul(argv[i], nullptr, 10));
        else return usage(argv[0]);
    }
    if (cfg.m == mode::bulk && cfg.file.empty() && cfg.bytes == 0) {
        std::fprintf(stderr, "tls_server_coring: bulk needs --file PATH or --bytes N\n");
        return 2;
    }
    try {
        return coring::run(main_task(cfg));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tls_server_coring: %s\n", e.what());
        return 1;
    }
}
