"""PostgreSQL round trips: coring (benchmarks/peers/pg_select_coring.cpp, libpq's non-blocking API on the loop)
beside asyncpg (Debian: python3-asyncpg), against one throwaway server started here (initdb + pg_ctl into a
temporary directory, Unix socket only; as root, as the postgres user). N `SELECT 1`, then N `SELECT $1::int + 1`,
spread over C connections at once, best of 3; prints microseconds per query and the ratios.

    /usr/bin/python3 benchmarks/compare/pg_vs_asyncpg.py build/bench/benchmarks/pg_select_coring [N=10000] [C=4]
"""
import asyncio
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time


def start_server():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        sys.exit("PostgreSQL is not installed (Debian: postgresql)")
    bindir = os.path.dirname(bins[-1])
    work = tempfile.mkdtemp(prefix="coring-pg-bench-")
    as_user = []
    if os.geteuid() == 0:
        os.chmod(work, 0o777)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(work, "data")
    subprocess.run(as_user + [f"{bindir}/initdb", "-A", "trust", "-U", "coring", "-D", data], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    subprocess.run(as_user + [f"{bindir}/pg_ctl", "-w", "-D", data, "-l", os.path.join(work, "server.log"), "-o",
                              f"-k {work} -c listen_addresses='' -p 5432", "start"], check=True,
                   stdout=subprocess.DEVNULL, cwd="/")
    stop = as_user + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"]
    return work, stop


async def asyncpg_measure(work, n, c, with_param):
    import asyncpg
    conns = [await asyncpg.connect(host=work, port=5432, user="coring", database="postgres") for _ in range(c)]

    async def worker(conn, count):
        for i in range(count):
            if with_param:
                rows = await conn.fetch("SELECT $1::int + 1", i)
            else:
                rows = await conn.fetch("SELECT 1")
            assert len(rows) == 1

    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(conn, n // c) for conn in conns))
        best = min(best, (time.perf_counter() - t0) * 1e6 / n)
    for conn in conns:
        await conn.close()
    return best


def main():
    coring_bin = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    c = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    work, stop = start_server()
    try:
        conninfo = f"host={work} port=5432 user=coring dbname=postgres"
        out = subprocess.run([coring_bin, conninfo, str(n), str(c)], check=True, capture_output=True, text=True).stdout
        print(out, end="")
        coring = [float(line.split(":")[-1].split()[0]) for line in out.splitlines()]
        plain = asyncio.run(asyncpg_measure(work, n, c, False))
        param = asyncio.run(asyncpg_measure(work, n, c, True))
        print(f"asyncpg  SELECT 1:           {plain:.2f} us/query")
        print(f"asyncpg  SELECT $1::int + 1: {param:.2f} us/query")
        print(f"coring / asyncpg speed: SELECT 1 {plain / coring[0]:.2f}x, with a parameter {param / coring[1]:.2f}x")
    finally:
        subprocess.run(stop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
