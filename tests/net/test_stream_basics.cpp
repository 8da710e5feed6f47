#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <string>

namespace test_stream_basics {

using namespace std::chrono_literals;
using coring::task;

namespace {

task<> echo_one(coring::tcp_listener& l) {
    auto s = co_await l.accept();
    char buf[1024];
    for (;;) {
        const std::size_t n = co_await s.read(std::span(buf));
        if (n == 0) break;
        co_await s.write_all(std::string_view(buf, n));
    }
}

} // namespace

TEST_CASE("net - a TCP echo round trip over IPv4 and IPv6", "[net]") {
    for (const char* at : {"127.0.0.1:0", "[::1]:0"}) {
        SECTION(at) {
            coring::run([](const char* where) -> task<> {
                auto l = coring::tcp_listener::bind(coring::address::parse(where));
                CHECK(l.local_address().port() != 0);
                auto server = coring::spawn(echo_one(l));
                auto c = co_await coring::tcp_stream::connect(l.local_address());
                c.set_nodelay(true);
                CHECK(c.peer_address() == l.local_address());
                co_await c.write_all("ping\n");
                const std::string line = co_await c.read_until('\n');
                CHECK(line == "ping\n");
                co_await c.shutdown();
                co_await server; // the server saw the end of the stream after the half-close
                char b[4];
                const std::size_t n = co_await c.read(std::span(b));
                CHECK(n == 0);
                co_await c.close();
                CHECK_FALSE(c.is_open());
            }(at));
        }
    }
}

TEST_CASE("net - connect errors name the operation and the address", "[net]") {
    coring::run([]() -> task<> {
        bool refused = false;
        try {
            (void)co_await coring::tcp_stream::connect(coring::address::parse("127.0.0.1:9"));
        } catch (const std::system_error& e) {
            refused = e.code().value() == ECONNREFUSED &&
                      std::string(e.what()).find("connect 127.0.0.1:9") != std::string::npos;
        }
        CHECK(refused);
    }());
}

} // namespace test_stream_basics
