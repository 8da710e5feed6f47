// The load generator of benchmarks/compare/ws_vs_peers.py: WebSocket clients written with coring::http, the same
// program against every server, so that the servers differ and nothing else.
//
//   http_ws_load_coring echo   PORT CONNECTIONS SECONDS SIZE [deflate]
//       CONNECTIONS clients of ws://127.0.0.1:PORT/echo, each in a closed loop: send a text message of SIZE bytes,
//       wait for it to come back (checked byte for byte). Prints "messages=N seconds=S rate=R" (round trips).
//   http_ws_load_coring fanout PORT CLIENTS SECONDS SIZE BURST [deflate]
//       CLIENTS members of ws://127.0.0.1:PORT/room; the first sends BURST messages of SIZE bytes, then waits until
//       every member (itself too) has received all of them, and again until SECONDS have passed. Prints
//       "messages=N seconds=S rate=R" where N counts deliveries (messages received by a member).
//
// Messages are JSON-like text (numbers vary, keys repeat), so that compression has what it has on real traffic;
// `deflate` offers permessage-deflate (RFC 7692) and fails unless the server agrees.
//
// "ready" is printed once the connections are open, the result as soon as the measured phase ends (then the
// connections are closed). Any message missing, out of order or different ends the run with a non-zero status.
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using coring::task;
using coring::http::websocket;
using clk = std::chrono::steady_clock;

bool offer_deflate = false;

/// `size` bytes of JSON-like text, different for each `seed`.
std::string json_like(std::size_t size, std::uint64_t seed) {
    std::string s;
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    while (s.size() < size) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s += "{\"id\":" + std::to_string(x % 100000) + ",\"price\":" + std::to_string((x >> 20) % 1000) + "},";
    }
    s.resize(size);
    return s;
}

struct run_state {
    clk::time_point end;
    std::uint64_t messages = 0;
};

task<std::vector<websocket>> connect_all(std::string url, std::size_t n) {
    coring::http::client client;
    std::vector<websocket> conns;
    conns.reserve(n);
    while (conns.size() < n) {
        // In batches, as a crowd of browsers would arrive: a listen backlog is not a queue of 10,000.
        std::vector<task<websocket>> batch;
        coring::http::websocket_client_options o;
        o.limits.permessage_deflate = offer_deflate;
        o.limits.max_message = 64u << 20;
        for (std::size_t i = 0; i < 100 && conns.size() + batch.size() < n; ++i)
            batch.push_back(client.websocket(url, o));
        auto opened = co_await coring::gather(std::move(batch));
        for (auto& ws : opened) {
            if (offer_deflate && !ws.compressed()) throw std::runtime_error("the server did not agree to deflate");
            conns.push_back(std::move(ws));
        }
    }
    co_return conns;
}

task<> echo_client(websocket& ws, run_state& st, std::string payload) {
    while (clk::now() < st.end) {
        co_await ws.send_text(payload);
        coring::http::ws_message m = co_await ws.receive();
        if (!m.is_text() || m.data != payload) throw std::runtime_error("echo: a message came back different");
        ++st.messages;
    }
}

task<> echo_run(std::string port, std::size_t n, double seconds, std::size_t size) {
    auto conns = co_await connect_all("ws://127.0.0.1:" + port + "/echo", n);
    std::printf("ready\n");
    run_state st;
    const auto t0 = clk::now();
    st.end = t0 + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(seconds));
    std::vector<task<>> clients;
    std::uint64_t seed = 0;
    for (auto& ws : conns) clients.push_back(echo_client(ws, st, json_like(size, ++seed)));
    co_await coring::gather(std::move(clients));
    const double took = std::chrono::duration<double>(clk::now() - t0).count();
    std::printf("messages=%llu seconds=%.3f rate=%.0f\n", static_cast<unsigned long long>(st.messages), took,
                static_cast<double>(st.messages) / took);
    for (auto& ws : conns) co_await ws.close();
}

struct fanout_state {
    std::uint64_t delivered = 0; // this round
    std::uint64_t total = 0;
    std::uint64_t round_target = 0;
    coring::event round_done;
    bool stopping = false;
};

task<> member(websocket& ws, fanout_state& st, std::size_t size) {
    std::uint64_t expect = 0; // sequence number of the next message
    for (;;) {
        coring::http::ws_message m = co_await ws.receive();
        if (m.is_close()) co_return;
        const std::string head = std::to_string(expect) + ":";
        if (m.data.size() != size || m.data.compare(0, head.size(), head) != 0)
            throw std::runtime_error("fanout: message " + std::to_string(expect) + " missing or out of order");
        ++expect;
        ++st.total;
        if (++st.delivered == st.round_target) st.round_done.set();
    }
}

task<> fanout_run(std::string port, std::size_t n, double seconds, std::size_t size, std::size_t burst) {
    auto conns = co_await connect_all("ws://127.0.0.1:" + port + "/room", n);
    fanout_state st;
    std::vector<coring::join_handle<void>> members;
    for (auto& ws : conns) members.push_back(coring::spawn(member(ws, st, size)));
    std::printf("ready\n");
    const auto t0 = clk::now();
    const auto end = t0 + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(seconds));
    std::uint64_t seq = 0;
    while (clk::now() < end) {
        st.round_done.clear();
        st.delivered = 0;
        st.round_target = static_cast<std::uint64_t>(n) * burst;
        for (std::size_t i = 0; i < burst; ++i) {
            std::string text = std::to_string(seq) + ":" + json_like(size, seq);
            ++seq;
            text.resize(size);
            co_await conns[0].send_text(text);
        }
        co_await st.round_done.wait();
    }
    const double took = std::chrono::duration<double>(clk::now() - t0).count();
    std::printf("messages=%llu seconds=%.3f rate=%.0f\n", static_cast<unsigned long long>(st.total), took,
                static_cast<double>(st.total) / took);
    for (auto& ws : conns) co_await ws.close();
    for (auto& m : members) co_await m;
}

} // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const std::string mode = argc > 1 ? argv[1] : "";
    if (argc > 1 && std::string(argv[argc - 1]) == "deflate") {
        offer_deflate = true;
        --argc;
    }
    try {
        if (mode == "echo" && argc == 6) {
            coring::run(echo_run(argv[2], std::stoul(argv[3]), std::stod(argv[4]), std::stoul(argv[5])));
        } else if (mode == "fanout" && argc == 7) {
            coring::run(
                fanout_run(argv[2], std::stoul(argv[3]), std::stod(argv[4]), std::stoul(argv[5]), std::stoul(argv[6])));
        } else {
            std::fprintf(stderr,
                         "usage: %s echo PORT CONNECTIONS SECONDS SIZE [deflate]\n"
                         "       %s fanout PORT CLIENTS SECONDS SIZE BURST [deflate]\n",
                         argv[0], argv[0]);
            return 2;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "http_ws_load_coring: %s\n", e.what());
        return 1;
    }
}
