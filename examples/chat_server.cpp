// A chat server: every line a client sends goes to all the other clients, prefixed with the sender's address.
//
//   chat_server [address]        address: 127.0.0.1:8080 (the default), [::1]:9000, or a bare port (8080);
//                                port 0 picks a free port. The first line printed is the address it listens on.
//   Try it with a few terminals running `nc 127.0.0.1 8080`.
//
// A slow client must not hold up the others. So nobody waits for a client's socket but that client's own writer task:
// a broadcast only puts the line into each client's bounded outbox (try_push never waits). A client that lets
// `max_pending` lines pile up is too slow to keep up, and is disconnected ("dropped") rather than silently losing
// lines.
//
// Ctrl-C or SIGTERM stops it as echo_server does: stop accepting, cancel the clients, print "stopped: ...", exit 0.
#include <coring/coring.hpp>

#include <algorithm>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <string>
#include <system_error>
#include <vector>

constexpr std::size_t max_pending = 256; // lines queued for one client before it counts as too slow

struct client {
    coring::tcp_stream conn;
    std::string name = conn.peer_address().to_string(); // "127.0.0.1:51234"
    coring::queue<std::string> outbox{max_pending};     // lines waiting to be sent to this client
    coring::event too_slow{};                           // set when the outbox overflowed
};

// Everyone connected. The event loop is single-threaded: no lock needed.
std::vector<client*> clients;

// Hands `line` to every client but `from`; never waits.
void broadcast(const client* from, const std::string& line) {
    for (client* c : clients) {
        if (c == from) continue;
        if (!c->outbox.try_push(line)) c->too_slow.set(); // full: disconnect it (see session)
    }
}

coring::address listen_address(const std::string& arg) {
    if (arg.find(':') == std::string::npos) return coring::address::parse("127.0.0.1:" + arg);
    return coring::address::parse(arg);
}

// Reads the client's lines and broadcasts them, until the client closes the connection.
// (`me` points into session()'s frame, which awaits this task: it outlives it.)
coring::task<> read_lines(client* me) {
    for (;;) {
        std::string line = co_await me->conn.read_until('\n'); // ends with '\n'; longer than 64 KiB throws
        if (line.empty()) co_return;                           // end of stream: the client left
        if (line.back() != '\n') line += '\n';                 // a last line without its newline
        broadcast(me, me->name + ": " + line);
    }
}

// Sends the client its outbox, line by line. Only this task ever waits for this client's socket.
coring::task<> write_lines(client* me) {
    for (;;) {
        const std::string line = co_await me->outbox.pop();
        co_await me->conn.write_all(line);
    }
}

// Keeps a client in `clients` for as long as its session lasts, however the session ends (even cancelled).
struct membership {
    client* c;
    explicit membership(client* me) : c(me) { clients.push_back(c); }
    ~membership() { std::erase(clients, c); }
};

// One client, from joining to leaving. Its reader, its writer and the too_slow flag race: the first to finish (the
// client hung up, its connection failed, or it fell behind) ends the session, and when_any cancels the other two.
coring::task<> session(coring::tcp_stream conn) {
    client me{std::move(conn)};
    const membership in_room(&me);
    std::printf("%s joined (%zu online)\n", me.name.c_str(), clients.size());
    (void)me.outbox.try_push("* welcome, " + me.name + "\n");
    broadcast(&me, "* " + me.name + " joined\n");

    std::string why = "left";
    try {
        auto reader = read_lines(&me);
        auto writer = write_lines(&me);
        auto fell_behind = me.too_slow.wait();
        auto first = co_await coring::when_any(std::move(reader), std::move(writer), std::move(fell_behind));
        if (first.index() == 2) why = "dropped (too slow)";
    } catch (const std::system_error& e) { // reset, broken pipe...
        why = std::string("dropped (") + e.what() + ")";
    } catch (const coring::limit_overrun_error&) { // a line longer than the stream's limit
        why = "dropped (line too long)";
    }
    // (A cancellation, when the server stops, is not caught: the session just ends, and leaves the room.)
    std::printf("%s %s\n", me.name.c_str(), why.c_str());
    broadcast(&me, "* " + me.name + " " + why + "\n");
}

// Accepts clients until cancelled; as in echo_server, the task_group's join cancels them all when the server stops.
coring::task<> serve(coring::tcp_listener listener) {
    coring::task_group sessions;
    try {
        for (;;) {
            coring::tcp_stream conn = co_await listener.accept();
            conn.set_nodelay(true);
            sessions.spawn(session(std::move(conn)));
        }
    } catch (const coring::cancelled_error&) {}
    co_await sessions.join();
}

coring::task<> main_task(std::string where) {
    auto stop = coring::wait_signal(SIGINT, SIGTERM); // first: block the signals before anything else
    auto listener = coring::tcp_listener::bind(listen_address(where));
    std::printf("listening on %s\n", listener.local_address().to_string().c_str());

    auto server = serve(std::move(listener));
    auto first = co_await coring::when_any(std::move(server), stop);
    std::printf("stopped: %s\n", std::get<1>(first) == SIGINT ? "SIGINT" : "SIGTERM");
}

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        coring::run(main_task(argc > 1 ? argv[1] : "127.0.0.1:8080"));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "chat_server: %s\n", e.what());
        return 1;
    }
}
