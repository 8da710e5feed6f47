// A chat room for browsers: one HTML page (inline JavaScript) and a WebSocket endpoint; every message a page sends
// appears in every open page. aiohttp's WebSocket chat, with coring::http.
//
//   chat [address]       address: 127.0.0.1:8080 (the default), a bare port (8080), [::1]:9000; port 0 picks a free
//                        one. The first line printed is the address it listens on: open it in a browser, twice.
//
// Broadcast without head-of-line blocking: each member has its own bounded outbox (64 messages) drained by its own
// writer task, so one slow browser never stalls the others; a member whose outbox is full is disconnected (close
// 1008) rather than let it hold messages back or grow without bound.
//
// Ctrl-C or SIGTERM stops it: every page gets a close frame with 1001 (going away), then it exits 0.
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <signal.h>

#include <cstdio>
#include <exception>
#include <list>
#include <string>
#include <system_error>

using coring::task;
using coring::http::request;
using coring::http::response;
using coring::http::websocket;

namespace {

const char* const page = R"HTML(<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>coring chat</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}#log{border:1px solid #ccc;height:20em;overflow-y:auto;padding:.5em}
#log p{margin:.2em 0}form{display:flex;gap:.5em;margin-top:.5em}#text{flex:1}</style></head>
<body>
<h1>coring chat</h1>
<div id="status">connecting...</div>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" placeholder="Say something"><button>Send</button></form>
<script>
const log = document.getElementById("log");
const status = document.getElementById("status");
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
function show(text) {
  const p = document.createElement("p");
  p.textContent = text;
  p.className = "message";
  log.appendChild(p);
  log.scrollTop = log.scrollHeight;
}
ws.onopen = () => { status.textContent = "connected"; };
ws.onmessage = (e) => show(e.data);
ws.onclose = (e) => { status.textContent = "disconnected (" + e.code + ")"; };
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  if (input.value && ws.readyState === WebSocket.OPEN) ws.send(input.value);
  input.value = "";
};
</script>
</body>
</html>
)HTML";

coring::address listen_address(const std::string& arg) {
    if (arg.find(':') == std::string::npos) return coring::address::parse("127.0.0.1:" + arg);
    return coring::address::parse(arg);
}

/// One browser in the room: its connection and its outbox.
struct member {
    explicit member(websocket& w) : ws(w) {}
    websocket& ws;
    coring::queue<std::string> outbox{64};
    bool evicted = false; // its outbox overflowed
};

/// Everyone in the room (one loop: no locks).
class room {
public:
    void join(member& m) { members_.push_back(&m); }
    void leave(member& m) { members_.remove(&m); }
    /// Queues `text` for every member without waiting for anyone; a member whose outbox is full is evicted (its
    /// writer closes the connection with 1008).
    void broadcast(const std::string& text) {
        for (member* m : members_)
            if (!m->evicted && !m->outbox.try_push(text)) {
                m->evicted = true;
                m->outbox.close();
            }
    }
    [[nodiscard]] std::size_t size() const noexcept { return members_.size(); }

private:
    std::list<member*> members_;
};

/// Sends a member's outbox in order until it is closed (the member left), or closes the connection with 1008 when
/// the member was evicted; the member's receive() then sees the browser's answering close.
task<> writer(member& m) {
    try {
        while (!m.evicted) {
            std::string text = co_await m.outbox.pop();
            if (m.evicted) break;
            co_await m.ws.send_text(text);
        }
    } catch (const coring::queue_closed&) {
    } catch (const coring::http::websocket_error&) {
    } catch (const std::system_error&) {}
    if (!m.evicted) co_return;
    try {
        co_await m.ws.close(1008, "too slow: messages were piling up");
    } catch (const std::exception&) {}
}

task<> chat(room& r, websocket& ws) {
    member me(ws);
    r.join(me);
    auto sending = coring::spawn(writer(me));
    std::exception_ptr failure;
    try {
        for (;;) {
            coring::http::ws_message m = co_await ws.receive();
            if (m.is_close()) break;
            if (m.is_text()) r.broadcast(m.data);
        }
    } catch (...) {
        failure = std::current_exception();
    }
    r.leave(me);
    me.outbox.close();
    co_await sending;
    if (failure) std::rethrow_exception(failure);
}

task<> serve(std::string where) {
    auto stop = coring::wait_signal(SIGINT, SIGTERM);
    auto listener = coring::tcp_listener::bind(listen_address(where));
    std::printf("listening on http://%s\n", listener.local_address().to_string().c_str());
    std::fflush(stdout);
    room r;
    coring::http::server app;
    app.get("/", [](request&) -> task<response> {
        response res(200, page);
        res.headers.add("Content-Type", "text/html; charset=utf-8");
        co_return res;
    });
    app.websocket("/ws", [&r](request&, websocket& ws) -> task<> { co_await chat(r, ws); });
    auto stopper = coring::spawn([](coring::http::server& app, coring::signal_awaitable stop) -> task<> {
        co_await stop;
        std::printf("stopping\n");
        app.shutdown(std::chrono::seconds(2));
    }(app, std::move(stop)));
    co_await app.serve(listener);
    stopper.cancel();
}

} // namespace

int main(int argc, char** argv) {
    try {
        coring::run(serve(argc > 1 ? argv[1] : "127.0.0.1:8080"));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "chat: %s\n", e.what());
        return 1;
    }
}
