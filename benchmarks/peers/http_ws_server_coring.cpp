// The WebSocket server of benchmarks/compare/ws_vs_peers.py, with coring::http; its twins for aiohttp, Python's
// websockets, Node's ws and Go's gorilla/websocket are written inline in that script and do the same:
//
//   /echo   every message comes back to its sender, same kind, same bytes;
//   /room   every message a member sends goes to every member (the sender too), in order. As in the chat example,
//           each member has an outbox drained by its own writer task, so one slow member holds no one back; the
//           outbox is unbounded here (the load generator waits for each burst), where the chat bounds it.
//
//   http_ws_server_coring [PORT] [--deflate]      --deflate: both routes accept permessage-deflate
//
// PORT defaults to $PORT, then 8765; it listens on 127.0.0.1 (backlog 4096) and prints "listening on
// ws://127.0.0.1:P". SIGTERM or SIGINT stops it.
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <list>
#include <memory>
#include <string>

namespace {

using coring::task;
using coring::http::websocket;
using coring::http::ws_message;

task<> echo(websocket& ws) {
    for (;;) {
        ws_message m = co_await ws.receive();
        if (m.is_close()) co_return;
        if (m.is_text()) co_await ws.send_text(m.data);
        else co_await ws.send_binary(m.data);
    }
}

struct member {
    explicit member(websocket& w) : ws(w) {}
    websocket& ws;
    // Shared, not copied per member: a broadcast to 1,000 members is one string.
    coring::queue<std::shared_ptr<const std::string>> outbox;
};

task<> writer(member& m) {
    try {
        for (;;) {
            std::shared_ptr<const std::string> text = co_await m.outbox.pop();
            co_await m.ws.send_text(*text);
        }
    } catch (const coring::queue_closed&) {
    } catch (const std::exception&) {}
}

task<> room(std::list<member*>& members, websocket& ws) {
    member me(ws);
    members.push_back(&me);
    auto sending = coring::spawn(writer(me));
    try {
        for (;;) {
            ws_message m = co_await ws.receive();
            if (m.is_close()) break;
            auto shared = std::make_shared<const std::string>(std::move(m.data));
            for (member* other : members) (void)other->outbox.try_push(shared);
        }
    } catch (const std::exception&) {}
    members.remove(&me);
    me.outbox.close();
    co_await sending;
}

task<> main_task(coring::http::server& app, std::string port) {
    auto stop = coring::wait_signal(SIGINT, SIGTERM);
    coring::listen_options options;
    options.backlog = 4096;
    auto listener = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:" + port), options);
    std::printf("listening on ws://%s\n", listener.local_address().to_string().c_str());
    auto stopper = coring::spawn([](coring::http::server& app, coring::signal_awaitable stop) -> task<> {
        co_await stop;
        app.shutdown(std::chrono::seconds(1));
    }(app, std::move(stop)));
    co_await app.serve(listener);
}

} // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    bool deflate = false;
    if (argc > 1 && std::string(argv[argc - 1]) == "--deflate") {
        deflate = true;
        --argc;
    }
    const char* env_port = std::getenv("PORT");
    const std::string port = argc > 1 ? argv[1] : env_port ? env_port : "8765";
    std::list<member*> members;
    coring::http::server app;
    coring::http::websocket_route_options o;
    o.limits.permessage_deflate = deflate;
    o.limits.max_message = 64u << 20;
    app.websocket(
        "/echo", [](coring::http::request&, websocket& ws) -> task<> { co_await echo(ws); }, o);
    app.websocket(
        "/room", [&members](coring::http::request&, websocket& ws) -> task<> { co_await room(members, ws); }, o);
    try {
        coring::run(main_task(app, port));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "http_ws_server_coring: %s\n", e.what());
        return 1;
    }
}
