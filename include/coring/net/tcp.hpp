#pragma once

#include <coring/net/address.hpp>
#include <coring/net/connect.hpp>
#include <coring/net/detail/socket.hpp>
#include <coring/net/listener.hpp>
#include <coring/net/resolve.hpp>
#include <coring/net/stream.hpp>
#include <coring/task/task.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdint>
#include <exception>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace coring {

/// A TCP connection (asyncio's StreamReader/StreamWriter pair): see stream for reading, writing and closing.
class tcp_stream : public stream {
public:
    /// stream's constructors: `tcp_stream(fd, peer)` adopts a connected TCP socket (as connect() and accept() do);
    /// moving is stream's move.
    using stream::stream;

    /// Connects to `to` (IORING_OP_CONNECT). Throws std::system_error ("connect 127.0.0.1:9: Connection refused"),
    /// cancelled_error.
    [[nodiscard]] static connect_awaitable<tcp_stream> connect(address to) noexcept {
        return connect_awaitable<tcp_stream>(std::move(to));
    }

    /// Resolves `host` (a name or a numeric address) and tries each address in turn until one connects
    /// (asyncio.open_connection). Name resolution runs on the worker pool; cancelling the caller stops waiting for
    /// it. Throws the last connection error, with every address tried in its message, or resolve()'s error.
    [[nodiscard]] static task<tcp_stream> connect(std::string host, std::uint16_t port) {
        const std::vector<address> candidates = co_await resolve(host, port);
        std::string tried;
        int last = 0;
        for (const address& a : candidates) {
            try {
                co_return co_await connect(a);
            } catch (const std::system_error& e) {
                last = e.code().value();
                if (!tried.empty()) tried += ", ";
                tried += a.to_string();
            }
        }
        throw std::system_error(
            last ? last : ECONNREFUSED, std::system_category(),
            detail::str_cat("coring: connect ", host, ":", std::to_string(port), " (tried ", tried, ")"));
    }

    /// TCP_NODELAY: send small writes at once instead of coalescing them (Nagle). Servers answering requests want it.
    void set_nodelay(bool on) { detail::set_int_option(fd_, IPPROTO_TCP, TCP_NODELAY, on, "TCP_NODELAY on", peer_); }
    /// SO_KEEPALIVE: let the kernel probe an idle connection and report a dead peer.
    void set_keepalive(bool on) { detail::set_int_option(fd_, SOL_SOCKET, SO_KEEPALIVE, on, "SO_KEEPALIVE on", peer_); }
    /// SO_RCVBUF, in bytes (the kernel doubles and caps it).
    void set_receive_buffer_size(int bytes) {
        detail::set_int_option(fd_, SOL_SOCKET, SO_RCVBUF, bytes, "SO_RCVBUF on", peer_);
    }
    /// SO_SNDBUF, in bytes (the kernel doubles and caps it).
    void set_send_buffer_size(int bytes) {
        detail::set_int_option(fd_, SOL_SOCKET, SO_SNDBUF, bytes, "SO_SNDBUF on", peer_);
    }
};

/// A listening TCP socket (asyncio.start_server without the callback: accept() in a loop and spawn a task each).
class tcp_listener : public basic_listener<tcp_stream> {
public:
    /// Listens on `at` (port 0 picks a free port: see local_address()). IPv4 or IPv6; a [::] listener also takes
    /// IPv4 unless net.ipv6.bindv6only is set. Throws std::system_error ("bind 0.0.0.0:80: Permission denied").
    [[nodiscard]] static tcp_listener bind(const address& at, const listen_options& options = {}) {
        if (!at.is_ipv4() && !at.is_ipv6())
            throw std::invalid_argument(detail::str_cat(
                "coring: tcp_listener::bind needs an IPv4 or IPv6 address, not \"", at.to_string(), "\""));
        tcp_listener l;
        l.open(at, options);
        return l;
    }
};

} // namespace coring
