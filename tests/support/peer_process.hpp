#pragma once

// Peers nobody here wrote, run as child processes (curl, CPython, aiohttp, openssl s_server and s_client, nginx):
// waiting for one on a worker thread while a loop serves it, a server that prints its port, a program with a pipe on
// its stdin whose output is read as it comes, and a free port for a peer to bind.

#include "support/net_helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace coring_test {

/// The blocking child_process::wait, on a worker thread: the loop goes on serving the child meanwhile.
inline coring::task<process_result> finished(child_process& p, std::chrono::milliseconds limit) {
    co_return co_await coring::to_thread([](child_process* c, std::chrono::milliseconds l) { return c->wait(l); }, &p,
                                         limit);
}

/// A server process that prints its port on its first line.
struct peer_server {
    std::unique_ptr<child_process> proc;
    std::uint16_t port = 0;
};

/// Starts `argv` and reads the port it prints (within peer_start_limit; the test fails without one).
inline peer_server start_peer(const std::vector<std::string>& argv) {
    peer_server s;
    s.proc = std::make_unique<child_process>(argv);
    const std::string line = s.proc->read_line(peer_start_limit);
    INFO("the peer printed: " << line);
    REQUIRE(!line.empty());
    s.port = static_cast<std::uint16_t>(std::stoi(line));
    return s;
}

/// A free TCP port on 127.0.0.1 (bound and released: a child binds it next).
inline std::uint16_t free_port() {
    auto l = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    return l.local_address().port();
}

/// A program started with posix_spawn, with pipes on stdin and stdout (stderr goes to stdout too).
class piped_process : spawned_process {
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
        const int r = spawn(argv, fa);
        ::close(in[0]);
        ::close(out[1]);
        in_ = in[1];
        out_ = out[0];
        if (r != 0) FAIL("posix_spawn " << argv[0] << ": " << std::strerror(r));
    }
    ~piped_process() {
        kill();
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
    /// wait_for() that fails the test, showing the output so far, when `text` does not come within `limit` (a
    /// server's "listening" line).
    coring::task<> expect(std::string text, std::chrono::milliseconds limit) {
        const bool seen = co_await wait_for(std::move(text), limit);
        INFO(output());
        REQUIRE(seen);
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
    int in_ = -1;
    int out_ = -1;
    std::string seen_;
};

} // namespace coring_test
