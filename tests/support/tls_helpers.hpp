#pragma once

// Fixtures of the TLS tests: contexts made from the test PKI, a connected pair of TLS streams over loopback TCP, and
// child processes with a pipe on stdin (openssl s_server / s_client, CPython), read from a worker thread.

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"
#include "support/tls_certs.hpp"

#include <coring/coring.hpp>
#include <coring/tls.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace coring_test {

/// A client context trusting the test CA.
inline coring::tls::context test_client_context() {
    auto ctx = coring::tls::context::client();
    ctx.load_ca(tls_certs::get().ca);
    return ctx;
}
/// A server context presenting `files` (the CA-signed leaf by default).
inline coring::tls::context test_server_context(const cert_files& files = tls_certs::get().leaf) {
    return coring::tls::context::server(files.cert, files.key);
}

/// Two ends of one TLS connection over loopback TCP.
struct tls_pair {
    coring::tls::stream client;
    coring::tls::stream server;
};

inline coring::task<coring::tls::stream> tls_accept_one(coring::tcp_listener& l, coring::tls::context ctx) {
    coring::tcp_stream s = co_await l.accept();
    co_return co_await coring::tls::stream::accept(std::move(ctx), std::move(s));
}

/// Connects a client (checking `name`) to a fresh TLS server on 127.0.0.1 and returns both ends.
inline coring::task<tls_pair> tls_connect_pair(coring::tls::context client_ctx, coring::tls::context server_ctx,
                                               std::string name = "localhost") {
    auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    auto accepted = coring::spawn(tls_accept_one(l, std::move(server_ctx)));
    coring::tcp_stream tcp = co_await coring::tcp_stream::connect(l.local_address());
    coring::tls::stream client = co_await coring::tls::stream::connect(std::move(client_ctx), std::move(tcp), name);
    coring::tls::stream server = co_await accepted;
    co_return tls_pair{std::move(client), std::move(server)};
}

/// How many connections a "many connections" test makes: CORING_TLS_CONNECTIONS, else `normal`, or `sanitized`
/// under AddressSanitizer or ThreadSanitizer.
inline int tls_connection_count([[maybe_unused]] int normal, [[maybe_unused]] int sanitized) {
    if (const char* e = std::getenv("CORING_TLS_CONNECTIONS")) return std::max(1, std::atoi(e));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return sanitized;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return sanitized;
#else
    return normal;
#endif
#else
    return normal;
#endif
}

/// Awaits `t` and returns the what() of the std::logic_error it threw, empty if none (Catch's macros must not hold a
/// co_await).
inline coring::task<std::string> logic_error_of(coring::task<> t) {
    try {
        co_await std::move(t);
    } catch (const std::logic_error& e) {
        co_return e.what();
    }
    co_return std::string();
}

/// A free TCP port on 127.0.0.1 (bound and released: a child binds it next).
inline std::uint16_t free_port() {
    auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    return l.local_address().port();
}

/// A program started with posix_spawn, with pipes on stdin and stdout (stderr goes to stdout too).
class piped_process {
public:
    explicit piped_process(const std::vector<std::string>& argv) {
        int in[2], out[2];
        REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out[1], STDERR_FILENO);
        std::vector<char*> args;
        for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        const int r = ::posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(in[0]);
        ::close(out[1]);
        in_ = in[1];
        out_ = out[0];
        if (r != 0) {
            pid_ = -1;
            FAIL("posix_spawn " << argv[0] << ": " << std::strerror(r));
        }
    }
    piped_process(const piped_process&) = delete;
    piped_process& operator=(const piped_process&) = delete;
    ~piped_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {}
        }
        close_stdin();
        if (out_ >= 0) ::close(out_);
    }

    /// Writes to its stdin (blocking; small writes only).
    void send(std::string_view s) { REQUIRE(write_full(in_, s.data(), s.size())); }
    void close_stdin() {
        if (in_ >= 0) ::close(in_);
        in_ = -1;
    }
    /// Everything it printed so far.
    [[nodiscard]] const std::string& output() const noexcept { return seen_; }

    /// Reads its output until it contains `text` (true) or `limit` passes or it ends (false). Blocking: call it
    /// from a worker thread (wait_for()) while a loop serves the child.
    bool read_until_seen(std::string_view text, std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (seen_.find(text) == std::string::npos) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || out_ < 0) return false;
            pollfd p{out_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 50))) <= 0) continue;
            char buf[4096];
            const ssize_t n = ::read(out_, buf, sizeof buf);
            if (n <= 0) {
                if (n < 0 && errno == EINTR) continue;
                ::close(out_);
                out_ = -1;
                return seen_.find(text) != std::string::npos;
            }
            seen_.append(buf, static_cast<std::size_t>(n));
        }
        return true;
    }
    /// read_until_seen() on a worker thread.
    coring::task<bool> wait_for(std::string text, std::chrono::milliseconds limit) {
        co_return co_await coring::to_thread(
            [](piped_process* p, std::string t, std::chrono::milliseconds l) { return p->read_until_seen(t, l); }, this,
            std::move(text), limit);
    }
    /// Waits (on a worker thread) for it to exit, for at most `limit` (then kills it), collecting its output; the
    /// wait status.
    coring::task<int> exit_status(std::chrono::milliseconds limit) {
        co_return co_await coring::to_thread(
            [](piped_process* p, std::chrono::milliseconds l) {
                p->read_until_seen(std::string_view("\x01\x02never"), l); // drains until the end or the deadline
                const int st = wait_child(p->pid_, std::chrono::milliseconds(2000));
                p->pid_ = -1;
                return st;
            },
            this, limit);
    }

private:
    pid_t pid_ = -1;
    int in_ = -1;
    int out_ = -1;
    std::string seen_;
};

} // namespace coring_test
