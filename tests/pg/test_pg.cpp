// PostgreSQL through libpq's non-blocking API on the loop (coring/contrib/pg.hpp): a real server started for the test,
// 100 concurrent queries over 4 connections with parameters, errors as exceptions, and cancellation (PQcancel).
#include "support/helpers.hpp"
#include "support/peer_process.hpp"
#include "support/pg_server.hpp"

#include <coring/contrib/pg.hpp>
#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace test_pg {

using namespace std::chrono_literals;
using coring::task;

namespace {

/// Skips (with a message saying why) when PostgreSQL is not installed.
bool have_postgres() {
    if (!coring_test::pg_server::bin_dir().empty()) return true;
    WARN("PostgreSQL is not installed (Debian: postgresql): skipping");
    return false;
}

/// Runs `n` queries `SELECT $1::int * 2, $2::text` on one connection, one after another, checking each answer.
task<int> worker(coring::pg::connection& c, int first, int n) {
    int right = 0;
    for (int i = first; i < first + n; ++i) {
        std::vector<std::optional<std::string>> params{std::to_string(i), "row " + std::to_string(i)};
        const std::string sql = "SELECT $1::int * 2, $2::text, NULL::int";
        coring::pg::result r = co_await c.query(sql, std::move(params));
        if (r.rows() == 1 && r.get(0, 0) == std::to_string(2 * i) && r.get(0, 1) == "row " + std::to_string(i) &&
            r.is_null(0, 2))
            ++right;
    }
    co_return right;
}

} // namespace

TEST_CASE("pg - 100 queries with parameters over 4 connections at once", "[pg]") {
    if (!have_postgres()) return;
    coring_test::pg_server server;
    int right = 0;
    long created = -1;
    std::string big_length;
    coring::run([&]() -> task<> {
        std::vector<coring::pg::connection> conns;
        for (int i = 0; i < 4; ++i) conns.push_back(co_await coring::pg::connection::connect(server.conninfo()));
        std::vector<task<int>> work;
        for (int i = 0; i < 4; ++i) work.push_back(worker(conns[static_cast<std::size_t>(i)], i * 25, 25));
        for (int n : co_await coring::gather(std::move(work))) right += n;
        // A statement larger than the socket buffers: PQflush returns 1 and the flush waits for output (or input).
        std::vector<std::optional<std::string>> big{std::string(8 << 20, 'b')};
        const std::string length_sql = "SELECT length($1)";
        coring::pg::result len = co_await conns[2].query(length_sql, std::move(big));
        big_length = std::string(len.get(0, 0));
        (void)co_await conns[0].query("CREATE TABLE t (x int)");
        coring::pg::result ins = co_await conns[1].query("INSERT INTO t SELECT generate_series(1, 10)");
        created = ins.affected();
    }());
    CHECK(right == 100);
    CHECK(created == 10);
    CHECK(big_length == std::to_string(8 << 20));
}

TEST_CASE("pg - a bad statement is a pg::error with the server's message, the connection goes on", "[pg]") {
    if (!have_postgres()) return;
    coring_test::pg_server server;
    std::string what, state, after;
    bool bad_connect = false;
    coring::run([&]() -> task<> {
        coring::pg::connection c = co_await coring::pg::connection::connect(server.conninfo());
        try {
            (void)co_await c.query("SELEKT 1");
        } catch (const coring::pg::error& e) {
            what = e.what();
            state = e.sqlstate();
        }
        coring::pg::result r = co_await c.query("SELECT 'still here'");
        after = std::string(r.get(0, 0));
        try {
            (void)co_await coring::pg::connection::connect("host=/nonexistent port=1 user=coring");
        } catch (const coring::pg::error&) {
            bad_connect = true;
        }
    }());
    CHECK(coring_test::contains(what, "syntax error"));
    CHECK(state == "42601");
    CHECK(after == "still here");
    CHECK(bad_connect);
}

TEST_CASE("pg - a cancelled query is cancelled on the server (PQcancel), the connection stays usable", "[pg][cancel]") {
    if (!have_postgres()) return;
    coring_test::pg_server server;
    bool timed_out = false;
    double took = 0;
    std::string after;
    coring::run([&]() -> task<> {
        coring::pg::connection c = co_await coring::pg::connection::connect(server.conninfo());
        coring_test::stopwatch sw;
        try {
            (void)co_await coring::timeout(200ms, c.query("SELECT pg_sleep(30)"));
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        took = sw.seconds();
        coring::pg::result r = co_await c.query("SELECT 41 + 1");
        after = std::string(r.get(0, 0));
    }());
    CHECK(timed_out);
    CHECK(took < 15); // the server stopped the 30 s sleep
    CHECK(after == "42");
}

TEST_CASE("pg - a host name is resolved off the loop and every address is tried", "[pg]") {
    if (!have_postgres()) return;
    // localhost may resolve to ::1 first, where this server does not listen: libpq must go on to 127.0.0.1, as it
    // would with its own (blocking) lookup.
    coring_test::pg_server server(coring_test::free_port());
    std::string via, one, bad_name;
    coring::run([&]() -> task<> {
        const std::string tcp = "host=localhost port=" + std::to_string(server.port()) + " user=coring dbname=postgres";
        coring::pg::connection c = co_await coring::pg::connection::connect(tcp);
        via = PQhostaddr(c.native_handle());
        coring::pg::result r = co_await c.query("SELECT 1");
        one = std::string(r.get(0, 0));
        try {
            const std::string nowhere = "host=no-such-host.invalid port=5432 user=coring dbname=postgres";
            (void)co_await coring::pg::connection::connect(nowhere);
        } catch (const coring::pg::error& e) {
            bad_name = e.what();
        }
    }());
    CHECK(via == "127.0.0.1");
    CHECK(one == "1");
    CHECK(coring_test::contains(bad_name, "could not resolve host name \"no-such-host.invalid\""));
}

TEST_CASE("pg - a malformed connection string is a pg::error before anything starts", "[pg]") {
    std::string what;
    coring::run([&]() -> task<> {
        try {
            (void)co_await coring::pg::connection::connect("host=/tmp port");
        } catch (const coring::pg::error& e) {
            what = e.what();
        }
    }());
    CHECK(coring_test::contains(what, "invalid connection string"));
}

} // namespace test_pg
