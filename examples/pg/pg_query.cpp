// PostgreSQL on the loop: libpq's non-blocking API driven by coring (include/coring/contrib/pg.hpp, about 200 lines:
// wait_readable / wait_writable whenever libpq would block, release_fd before libpq closes its socket).
//
//   pg_query [CONNINFO] [--queries N] [--connections C]
//
// CONNINFO is libpq's ("host=/var/run/postgresql dbname=postgres", a postgresql:// URI; empty: libpq's defaults and
// the PG* environment variables). Runs N queries with parameters (default 100) spread over C connections (default 4)
// at once, then shows a bad statement's error and a cancelled `pg_sleep(30)` (the server gets a cancel request, the
// connection stays usable). The showcase runs it against a server of its own in a temporary directory.
#include <coring/contrib/pg.hpp>
#include <coring/coring.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

coring::task<int> worker(coring::pg::connection& c, int first, int n) {
    int right = 0;
    for (int i = first; i < first + n; ++i) {
        std::vector<std::optional<std::string>> params{std::to_string(i)};
        const std::string sql = "SELECT $1::int * 2";
        coring::pg::result r = co_await c.query(sql, std::move(params));
        if (r.get(0, 0) == std::to_string(2 * i)) ++right;
    }
    co_return right;
}

coring::task<> main_task(std::string conninfo, int queries, int connections) {
    std::vector<coring::pg::connection> conns;
    for (int i = 0; i < connections; ++i) conns.push_back(co_await coring::pg::connection::connect(conninfo));
    coring::pg::result version = co_await conns[0].query("SELECT version()");
    std::printf("connected %d times to %.*s\n", connections, static_cast<int>(version.get(0, 0).find(',')),
                version.get(0, 0).data());

    const auto t0 = std::chrono::steady_clock::now();
    std::vector<coring::task<int>> work;
    const int per = queries / connections;
    for (int i = 0; i < connections; ++i) work.push_back(worker(conns[static_cast<std::size_t>(i)], i * per, per));
    int right = 0;
    for (int n : co_await coring::gather(std::move(work))) right += n;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%d of %d queries answered right over %d connections in %.1f ms\n", right, per * connections,
                connections, ms);

    try {
        (void)co_await conns[0].query("SELEKT 1");
    } catch (const coring::pg::error& e) {
        std::printf("a bad statement: %s (SQLSTATE %s)\n", e.what(), e.sqlstate().c_str());
    }

    const auto t1 = std::chrono::steady_clock::now();
    bool cancelled = false;
    try {
        (void)co_await coring::timeout(200ms, conns[1].query("SELECT pg_sleep(30)"));
    } catch (const coring::timeout_error&) {
        cancelled = true;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    coring::pg::result r = co_await conns[1].query("SELECT 'still usable'");
    std::printf("pg_sleep(30) %s after %.2f s; then the connection answered '%.*s'\n",
                cancelled ? "cancelled" : "not cancelled?", s, static_cast<int>(r.get(0, 0).size()),
                r.get(0, 0).data());
}

} // namespace

int main(int argc, char** argv) {
    std::string conninfo;
    int queries = 100, connections = 4;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--queries") == 0 && i + 1 < argc) queries = std::atoi(argv[++i]);
        else if (std::strcmp(argv[i], "--connections") == 0 && i + 1 < argc) connections = std::atoi(argv[++i]);
        else conninfo = argv[i];
    }
    if (connections < 1 || queries < connections) {
        std::fprintf(stderr, "pg_query: need at least one connection and as many queries as connections\n");
        return 2;
    }
    try {
        coring::run(main_task(conninfo, queries, connections));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pg_query: %s\n", e.what());
        return 1;
    }
}
