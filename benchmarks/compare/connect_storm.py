#!/usr/bin/python3
"""A new connection per request: coring's HTTP server with and without its multishot accept, beside nginx, in one run.

    /usr/bin/python3 benchmarks/compare/connect_storm.py --hello build/bench/examples/http/hello_server
    /usr/bin/python3 benchmarks/compare/connect_storm.py --hello ... --seconds 3 --reps 5 --conns 1,16,64

`wrk -t1 -cN -d{S}s -H "Connection: close" http://127.0.0.1:P/`: every request opens a TCP connection, sends one
GET, reads the answer and the server closes; so each request costs the server an accept, a receive, a send and a
close. The servers, each pinned to CPU 0 (wrk on CPU 1):

  nginx          one worker, `return 200 "Hello, World!"` (accept_mutex off, multi_accept off: its defaults)
  coring         examples/http/hello_server serving `/` (loop_options::multishot_accept on: the default)
  coring-plain   the same binary with CORING_MULTISHOT_ACCEPT=0: one IORING_OP_ACCEPT submitted per connection

Reported per server: requests/s and the server's CPU time per request (/proc/PID/stat; nginx: its worker), medians
over the repetitions, whose order alternates. Over loopback with two cores wrk and the server share the machine, so
CPU per request is the figure to compare; rates drift with the machine's load.

Standard library only; needs nginx, wrk and taskset on PATH.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

from server_process import GEN_CPU, Meter, Server, free_port
from tls_vs_nginx import NGINX_CONF

# nginx's server block; the rest of its configuration is tls_vs_nginx.py's (its TLS lines apply to no server here).
NGINX_SERVER = """
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = / {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}
    }}"""


def start_nginx(tmp):
    port = free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(user=user, tmp=tmp, servers=NGINX_SERVER.format(port=port)))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return Server("nginx", [nginx, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")], port, tmp)


def start_coring(name, hello, tmp, multishot):
    port = free_port()
    env = dict(os.environ, CORING_MULTISHOT_ACCEPT="1" if multishot else "0")
    return Server(name, [hello, f"127.0.0.1:{port}"], port, tmp, env=env)


def storm(server, conns, seconds):
    m = Meter(server)
    argv = ["taskset", "-c", GEN_CPU, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-H", "Connection: close",
            f"http://127.0.0.1:{server.port}/"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    cpu, wall, other = m.done()
    found = re.search(r"(\d+) requests in", r.stdout)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", r.stdout)
    errors = re.search(r"Socket errors: (.*)", r.stdout)
    if not found or not rps:
        raise RuntimeError(f"wrk against {server.name} failed: {(r.stdout + r.stderr)[-400:]}")
    n = int(found.group(1))
    return {"rps": float(rps.group(1)), "us": 1e6 * cpu / max(n, 1), "other": other,
            "errors": errors.group(1) if errors else ""}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hello", required=True, help="examples/http/hello_server")
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--conns", default="16,64", help="wrk connection counts, comma separated")
    ap.add_argument("--only", default="nginx,coring,coring-plain")
    a = ap.parse_args()
    names = a.only.split(",")
    conns = [int(c) for c in a.conns.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="storm-") as tmp:
        servers = {}
        try:
            if "nginx" in names:
                servers["nginx"] = start_nginx(tmp)
            if "coring" in names:
                servers["coring"] = start_coring("coring", a.hello, tmp, True)
            if "coring-plain" in names:
                servers["coring-plain"] = start_coring("coring-plain", a.hello, tmp, False)
            for c in conns:
                for n in names:  # warm-up: caches, the accept queue, the kernel's socket slabs
                    storm(servers[n], c, 1)
            for rep in range(a.reps):
                order = names if rep % 2 == 0 else list(reversed(names))
                for c in conns:
                    for n in order:
                        results.setdefault((n, c), []).append(storm(servers[n], c, a.seconds))
        finally:
            for s in servers.values():
                s.stop()
    print(f"Connection per request: wrk -t1 -cN -d{a.seconds}s -H 'Connection: close' on CPU {GEN_CPU}, "
          f"servers on CPU 0; median of {a.reps}")
    print()
    print("| server | conns | requests/s | server CPU per request | vs nginx (CPU) | socket errors |")
    print("|---|---|---|---|---|---|")
    for c in conns:
        base = statistics.median(r["us"] for r in results[("nginx", c)]) if ("nginx", c) in results else None
        for n in names:
            rs = results[(n, c)]
            rps = statistics.median(r["rps"] for r in rs)
            us = statistics.median(r["us"] for r in rs)
            ratio = f"{base / us:.2f}x" if base else "-"
            errs = "; ".join(sorted({r["errors"] for r in rs if r["errors"]})) or "none"
            print(f"| {n} | {c} | {rps:,.0f} | {us:.2f} us | {ratio} | {errs} |")
    print()
    print("vs nginx (CPU): nginx's CPU per request over the server's (above 1: less CPU than nginx).")
    print("All runs:")
    for (n, c), rs in sorted(results.items()):
        print(f"  {n} c={c}: " + ", ".join(f"{r['rps']:,.0f}/s {r['us']:.2f}us other@cpu0={r['other']:.0%}"
                                              for r in rs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
