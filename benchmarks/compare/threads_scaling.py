#!/usr/bin/env python3
"""hello_server with --threads 1 and 2 under wrk, and the spread of 10,000 connections over echo_server's loops.

    benchmarks/compare/threads_scaling.py --hello build/rel/examples/http/hello_server \\
        --echo build/rel/examples/echo_server [--seconds 5] [--reps 3] [--paths / /work] [--wrk-threads 2] \\
        [--connections 32]

Scaling: for each path and each --threads value, starts hello_server on a free port, runs
`wrk -t2 -c32 -dNs http://127.0.0.1:PORT/PATH` (-t and -c from --wrk-threads and --connections) and reads the server's utime+stime (all its threads, /proc/PID/stat)
before and after: requests/s and server CPU per request. wrk's own CPU (getrusage of children) is printed beside it,
since on a small machine the load generator competes with the loops for the same cores. Each row is the median of
--reps runs (every run is printed).

Peer (--nginx): nginx with worker_processes 1 and 2 (`return 200 "Hello, World!"`, access log off, keep-alive), the
same wrk run on "/", its server CPU summed over its workers.

Spread: echo_server --threads 2 --stats, 10,000 connections opened by this script in batches (each sends a line,
reads it back, closes), then SIGINT: the per-loop accepted counts and busiest/least busy.
"""

import argparse
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import shutil
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: fields 14 and 15 of proc(5)


def start(argv):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r":(\d+)\s*$", line)
    if not m:
        p.kill()
        sys.exit(f"{argv[0]} printed {line!r}, not its address")
    return p, int(m.group(1))


def stop(p):
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    if p.returncode != 0:
        sys.exit(f"server exited {p.returncode}: {err}")
    return out


# wrk sends `depth` requests per write on each connection (HTTP/1.1 pipelining) and counts every response: the load
# generator then costs a fraction of its CPU per request, which on a 2-core machine it takes from the server.
PIPELINE_LUA = """
local depth = %d
init = function(args)
   local r = {}
   for i = 1, depth do r[i] = wrk.format(nil, nil) end
   req = table.concat(r)
end
request = function() return req end
"""


def wrk_command(wrk_threads, connections, seconds, url, pipeline):
    cmd = ["wrk", f"-t{wrk_threads}", f"-c{connections}", f"-d{seconds}s"]
    if pipeline > 1:
        script = os.path.join(tempfile.gettempdir(), f"coring_pipeline_{pipeline}.lua")
        with open(script, "w") as f:
            f.write(PIPELINE_LUA % pipeline)
        cmd += ["-s", script]
    return cmd + [url]


def wrk_run(hello, threads, path, seconds, wrk_threads, connections, pipeline=1):
    p, port = start([hello, "127.0.0.1:0", "--threads", str(threads), "--stats"])
    try:
        time.sleep(0.2)
        before = cpu_seconds(p.pid)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(wrk_command(wrk_threads, connections, seconds, f"http://127.0.0.1:{port}{path}", pipeline),
                             capture_output=True, text=True, check=True).stdout
        kids_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        after = cpu_seconds(p.pid)
    finally:
        stats = stop(p)
    m = re.search(r"^\s*(\d+) requests in", out, re.M)
    requests = int(m.group(1))
    rps = float(re.search(r"Requests/sec:\s*([0-9.]+)", out).group(1))
    errors = re.search(r"Non-2xx.*|Socket errors.*", out)
    wrk_cpu = (kids_after.ru_utime + kids_after.ru_stime) - (kids.ru_utime + kids.ru_stime)
    accepted = stats.strip().splitlines()[-1]
    return {"rps": rps, "us_per_req": (after - before) * 1e6 / requests, "server_cpu": after - before,
            "wrk_cpu": wrk_cpu, "errors": errors.group(0) if errors else "", "accepted": accepted}


NGINX_CONF = """
worker_processes {workers};
{user}
daemon off;
master_process on;
error_log {tmp}/error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    tcp_nodelay on;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{ return 200 "Hello, World!"; }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_run(workers, seconds, wrk_threads, connections):
    tmp = tempfile.mkdtemp(prefix="threads-nginx-")
    port = free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    with open(f"{tmp}/nginx.conf", "w") as f:
        f.write(NGINX_CONF.format(workers=workers, user=user, tmp=tmp, port=port))
    p = subprocess.Popen(["nginx", "-c", f"{tmp}/nginx.conf", "-p", tmp], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        cpu = lambda: sum(cpu_seconds(int(c)) for c in children)  # noqa: E731
        before = cpu()
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(["wrk", f"-t{wrk_threads}", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, check=True).stdout
        kids_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        after = cpu()
    finally:
        p.send_signal(signal.SIGQUIT)
        p.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    requests = int(re.search(r"^\s*(\d+) requests in", out, re.M).group(1))
    rps = float(re.search(r"Requests/sec:\s*([0-9.]+)", out).group(1))
    wrk_cpu = (kids_after.ru_utime + kids_after.ru_stime) - (kids.ru_utime + kids.ru_stime)
    return {"rps": rps, "us_per_req": (after - before) * 1e6 / requests, "server_cpu": after - before,
            "wrk_cpu": wrk_cpu}


def spread(echo, connections=10000, batch=200):
    p, port = start([echo, "127.0.0.1:0", "--threads", "2", "--stats"])
    try:
        done = 0
        while done < connections:
            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(min(batch, connections - done))]
            for i, s in enumerate(socks):
                s.sendall(f"connection {done + i}\n".encode())
            for i, s in enumerate(socks):
                want = f"connection {done + i}\n".encode()
                got = b""
                while len(got) < len(want):
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    got += chunk
                if got != want:
                    sys.exit(f"echo mismatch: {got!r}")
                s.close()
            done += len(socks)
    finally:
        out = stop(p)
    counts = [int(n) for n in re.findall(r"loop \d+: (\d+)", out)]
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hello", required=True)
    ap.add_argument("--echo")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--paths", nargs="+", default=["/", "/work"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--nginx", action="store_true", help="also nginx with 1 and 2 workers on /")
    ap.add_argument("--pipeline", type=int, default=1, help="requests per write on each wrk connection (default 1)")
    args = ap.parse_args()

    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"# wrk -t{args.wrk_threads} -c{args.connections} -d{args.seconds}s"
          f"{f', {args.pipeline} requests pipelined per write' if args.pipeline > 1 else ''}, "
          f"{args.reps} runs per row (median shown; every run below it)")
    rows = []
    for path in args.paths:
        base = None
        for t in args.threads:
            runs = [wrk_run(args.hello, t, path, args.seconds, args.wrk_threads, args.connections, args.pipeline)
                    for _ in range(args.reps)]
            med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
            rps = med("rps")
            base = base or rps
            rows.append((path, t, rps, rps / base, med("us_per_req"), med("wrk_cpu") / args.seconds))
            print(f"{path:6} --threads {t}: {rps:10,.0f} req/s ({rps / base:.2f}x), server "
                  f"{med('us_per_req'):6.2f} us CPU/req, server CPU {med('server_cpu') / args.seconds:.2f} cores, "
                  f"wrk CPU {med('wrk_cpu') / args.seconds:.2f} cores")
            for r in runs:
                print(f"    run: {r['rps']:10,.0f} req/s, {r['us_per_req']:6.2f} us/req, server "
                      f"{r['server_cpu']:.2f} s, wrk {r['wrk_cpu']:.2f} s; {r['accepted']} {r['errors']}")
            sys.stdout.flush()
    if args.nginx:
        base = None
        for w in args.threads:
            runs = [nginx_run(w, args.seconds, args.wrk_threads, args.connections) for _ in range(args.reps)]
            med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
            rps = med("rps")
            base = base or rps
            print(f"nginx  / {w} worker(s): {rps:10,.0f} req/s ({rps / base:.2f}x), server {med('us_per_req'):6.2f} us "
                  f"CPU/req, server CPU {med('server_cpu') / args.seconds:.2f} cores, wrk CPU "
                  f"{med('wrk_cpu') / args.seconds:.2f} cores")
            for r in runs:
                print(f"    run: {r['rps']:10,.0f} req/s, {r['us_per_req']:6.2f} us/req, server "
                      f"{r['server_cpu']:.2f} s, wrk {r['wrk_cpu']:.2f} s")
            sys.stdout.flush()
    if args.echo:
        counts = spread(args.echo)
        print(f"# spread: echo_server --threads 2, 10,000 connections (batches of 200, each echoes one line): "
              f"accepted {counts}, busiest/least busy {max(counts) / min(counts):.3f}")
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
