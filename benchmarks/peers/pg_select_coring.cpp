// PostgreSQL round trips through coring/contrib/pg.hpp: N `SELECT 1` (and N `SELECT $1::int + 1` with a parameter)
// spread over C connections at once, each connection one statement at a time. The peer of
// benchmarks/compare/pg_vs_asyncpg.py, which starts a throwaway server and runs this beside asyncpg.
//
//   pg_select_coring CONNINFO [N=10000] [C=4]
//
// Prints microseconds per query for each kind (best of 3).
#include <coring/contrib/pg.hpp>
#include <coring/coring.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace {

coring::task<> worker(coring::pg::connection& c, int n, bool with_param) {
    const std::string plain = "SELECT 1";
    const std::string param = "SELECT $1::int + 1";
    for (int i = 0; i < n; ++i) {
        std::vector<std::optional<std::string>> params;
        if (with_param) params.emplace_back(std::to_string(i));
        coring::pg::result r = co_await c.query(with_param ? param : plain, std::move(params));
        if (r.rows() != 1) std::abort();
    }
}

coring::task<double> measure(std::string conninfo, int n, int c, bool with_param) {
    std::vector<coring::pg::connection> conns;
    for (int i = 0; i < c; ++i) conns.push_back(co_await coring::pg::connection::connect(conninfo));
    double best = 1e30;
    for (int k = 0; k < 3; ++k) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<coring::task<>> work;
        for (auto& conn : conns) work.push_back(worker(conn, n / c, with_param));
        co_await coring::gather(std::move(work));
        best = std::min(best,
                        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n);
    }
    co_return best;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: pg_select_coring CONNINFO [N] [C]\n");
        return 2;
    }
    const std::string conninfo = argv[1];
    const int n = argc > 2 ? std::atoi(argv[2]) : 10000;
    const int c = argc > 3 ? std::atoi(argv[3]) : 4;
    double plain = 0, param = 0;
    coring::run([&]() -> coring::task<> {
        plain = co_await measure(conninfo, n, c, false);
        param = co_await measure(conninfo, n, c, true);
    }());
    std::printf("coring   SELECT 1:           %.2f us/query\n", plain);
    std::printf("coring   SELECT $1::int + 1: %.2f us/query\n", param);
}
