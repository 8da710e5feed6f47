#!/usr/bin/python3
"""coring's TLS server beside nginx (1 worker) with the same certificates and the same OpenSSL, in one run.

    /usr/bin/python3 benchmarks/compare/tls_vs_nginx.py --coring build/bench/benchmarks/tls_server_coring
    /usr/bin/python3 benchmarks/compare/tls_vs_nginx.py --coring ... --hello build/.../examples/http/hello_server \
        --seconds 3 --reps 2 --only handshake,bulk,idle,wrk

Every server runs pinned to CPU 0 (taskset -c 0), every client to CPU 1, over 127.0.0.1. Certificates (ECDSA P-256
and RSA-2048, self-signed, CN=localhost, SAN 127.0.0.1) are made with the openssl CLI in a temporary directory, which
also holds nginx's prefix (config, pid, logs) and the 1 GiB file; it is removed at the end.

  handshake  `openssl s_time -connect 127.0.0.1:P -www / -new|-reuse -time S`: one connection at a time, each a
             TLS 1.3 handshake (X25519; ECDSA P-256 or RSA-2048 certificate), a GET / and its short answer, then
             close. -reuse resumes with the ticket of the first connection (the `resumed` column counts s_time's
             'r' marks). nginx: `return 200 "Hello, World!"`; coring: tls_server_coring handshake.
  bulk       1 GiB over one TLS 1.3 connection, AES-128-GCM: `curl --tls13-ciphers TLS_AES_128_GCM_SHA256 -o
             /dev/null` (ECDSA certificate) fetching a 1 GiB file (in the page cache) from nginx, from
             tls_server_coring bulk --file, and from `openssl s_server -WWW`.
  idle       memory per idle TLS connection: a Python asyncio ssl client opens N connections (TLS 1.3, ECDSA) and
             holds them; the server's VmRSS (nginx: its worker) after, minus before (after a warm-up), over N.
  wrk        HTTPS keep-alive hello world: `wrk -t1 -c64 -d{S}s https://127.0.0.1:P/` against nginx, against
             benchmarks/peers/http_tls_hello_coring (coring::http's app.serve(listener, tls_ctx), "Hello, World!" as
             text/plain like nginx's; --https, found beside --coring by default) and against the example
             `hello_server --tls CERT KEY ADDRESS` (--hello; its row is skipped without it).

Each measurement records the server's CPU time (/proc/PID/stat utime+stime; nginx: the worker) and reports it per
operation, and how busy CPU 0 was with anything else meanwhile (`other@cpu0`: CPU 0's busy time from /proc/stat
minus the server's): on this shared 2-core machine, CPU per operation is the steadier figure, rates drift with
load. The order of the servers alternates between repetitions; tables show medians.

Standard library only; needs nginx, openssl, curl, wrk and taskset on PATH; run as root or not (nginx's worker
runs as the invoking user).
"""

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from server_process import GEN_CPU, SERVER_CPU, Meter, Server, cpu0_busy, cpu_seconds, free_port, open_fds, rss_kib

GiB = 1 << 30

IDLE_CLIENT = r"""
import asyncio, ssl, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
async def main():
    conns = []
    while len(conns) < n:
        batch = min(50, n - len(conns))
        conns += await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port, ssl=ctx) for _ in range(batch)))
    print("ready", len(conns), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for _, w in conns:
        w.transport.abort()
asyncio.run(main())
"""


# ---------------------------------------------------------------------------------------------------------------------
# processes and /proc


def gen(argv, timeout, **kw):
    return subprocess.run(["taskset", "-c", GEN_CPU] + argv, capture_output=True, text=True, timeout=timeout, **kw)


# ---------------------------------------------------------------------------------------------------------------------
# set-up


def make_certs(tmp):
    certs = {}
    for name, newkey in (("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                         ("rsa", ["-newkey", "rsa:2048"])):
        crt, key = os.path.join(tmp, f"{name}.crt"), os.path.join(tmp, f"{name}.key")
        subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", crt, "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        certs[name] = (crt, key)
    return certs


def make_file(path, size):
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)


NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    tcp_nodelay on;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
{servers}
}}
"""

NGINX_SERVER = """
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        root {html};
        location = / {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}
    }}"""


def start_nginx(tmp, certs, html):
    ports = {name: free_port() for name in certs}
    servers = "".join(NGINX_SERVER.format(port=ports[n], crt=c[0], key=c[1], html=html) for n, c in certs.items())
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(user=user, tmp=tmp, servers=servers))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    srv = Server("nginx", [nginx, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")],
                 ports["ecdsa"], tmp)
    return srv, ports


def negotiated(port):
    """What s_client agrees on (protocol, suite, signature, key exchange), for the header."""
    r = gen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief"], 10, input="")
    keep = ("Protocol version", "Ciphersuite", "Signature type", "Server Temp Key")
    got = {}
    for line in r.stderr.splitlines():
        k, _, v = line.partition(":")
        if k.strip() in keep:
            got[k.strip()] = v.strip()
    return ", ".join(got.get(k, "?") for k in keep)


# ---------------------------------------------------------------------------------------------------------------------
# measurements


def s_time(server, port, reuse, seconds):
    m = Meter(server)
    r = gen(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-www", "/", "-reuse" if reuse else "-new",
             "-time", str(seconds)], seconds + 30)
    cpu, wall, other = m.done()
    found = re.search(r"(\d+) connections in [\d.]+s;", r.stdout)
    if not found:
        raise RuntimeError(f"s_time against {server.name} failed: {(r.stdout + r.stderr)[-400:]}")
    n = int(found.group(1))
    # One mark per connection: 'r' resumed, '*' full ('starting' comes before the -reuse loop).
    runs = re.findall(r"^[r*0-9]+$", r.stdout, re.M)
    marks = max(runs, key=len).count("r") if reuse and runs else 0
    return {"rate": n / wall, "us_op": 1e6 * cpu / max(n, 1), "resumed": marks / max(n, 1), "other": other}


def bulk(server, url, cafile, size):
    m = Meter(server)
    r = gen(["curl", "-s", "-S", "-o", "/dev/null", "--cacert", cafile, "--tlsv1.3", "--tls13-ciphers",
             "TLS_AES_128_GCM_SHA256", "-w", "%{size_download} %{time_total}", url], 120)
    cpu, wall, other = m.done()
    try:
        got, t = r.stdout.split()
        got, t = int(got), float(t)
    except ValueError:
        raise RuntimeError(f"curl against {server.name} failed: {r.stderr.strip()}")
    if got != size:
        raise RuntimeError(f"curl got {got} bytes of {size} from {server.name}: {r.stderr.strip()}")
    return {"mibs": size / t / (1 << 20), "cpu_gib": cpu * GiB / size, "other": other}


def idle(server, port, n):
    warm = gen([sys.executable, "-c", IDLE_CLIENT, str(port), "20"], 60, input="\n")
    if "ready" not in warm.stdout:
        raise RuntimeError(f"idle client against {server.name} failed: {warm.stderr[-400:]}")
    time.sleep(0.3)
    pids = server.pids()
    before, fds0 = rss_kib(pids), open_fds(pids)
    client = subprocess.Popen(["taskset", "-c", GEN_CPU, sys.executable, "-c", IDLE_CLIENT, str(port), str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = client.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"idle client against {server.name} failed: {client.stderr.read()[-400:]}")
        deadline = time.time() + 5
        while open_fds(pids) < fds0 + n and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the last handshakes' tickets, the pending reads
        held = open_fds(pids) - fds0
        after = rss_kib(pids)
    finally:
        client.communicate("\n", timeout=30)
    return {"kib_conn": (after - before) / n, "before": before, "after": after, "held": held}


def wrk(server, url, seconds):
    m = Meter(server)
    r = gen(["wrk", "-t1", "-c64", f"-d{seconds}s", url], seconds + 30)
    cpu, wall, other = m.done()
    found = re.search(r"(\d+) requests in", r.stdout)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", r.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", r.stdout)
    if not found or not rps:
        raise RuntimeError(f"wrk against {server.name} failed: {(r.stdout + r.stderr)[-400:]}")
    n = int(found.group(1))
    return {"rps": float(rps.group(1)), "us_op": 1e6 * cpu / max(n, 1), "other": other,
            "errors": errors.group(0) if errors else ""}


# ---------------------------------------------------------------------------------------------------------------------
# output


def table(header, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    print()


def med(results, key, field):
    vals = [r[field] for r in results.get(key, [])]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def f0(x):
    return "-" if x is None else f"{x:,.0f}"


def f1(x):
    return "-" if x is None else f"{x:,.1f}"


def pct(x):
    return "-" if x is None else f"{100 * x:.0f}%"


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coring", required=True, help="path to tls_server_coring (a release build)")
    ap.add_argument("--https", help="path to http_tls_hello_coring (default: beside --coring)")
    ap.add_argument("--hello", help="path to examples/http/hello_server built with --tls support (wrk row)")
    ap.add_argument("--seconds", type=int, default=3, help="seconds per s_time and wrk run")
    ap.add_argument("--reps", type=int, default=2, help="repetitions (medians are shown)")
    ap.add_argument("--idle", type=int, default=1000, help="idle connections to hold")
    ap.add_argument("--size", type=int, default=1024, help="bulk transfer in MiB")
    ap.add_argument("--only", default="handshake,bulk,idle,wrk")
    args = ap.parse_args()
    for tool in ("nginx", "openssl", "curl", "wrk", "taskset"):
        if shutil.which(tool) is None and not (tool == "nginx" and os.path.exists("/usr/sbin/nginx")):
            sys.exit(f"tls_vs_nginx: {tool} is not installed")
    only = set(args.only.split(","))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))  # children inherit it
    coring_bin = os.path.abspath(args.coring)
    size = args.size << 20

    tmp = tempfile.mkdtemp(prefix="coring-tls-")
    servers = []
    results = {}

    def start(name, argv, port, cwd=None):
        s = Server(name, argv, port, tmp, cwd)
        servers.append(s)
        return s

    def stop(s):
        s.stop()
        servers.remove(s)

    def add(key, value):
        results.setdefault(key, []).append(value)

    load_before = load()
    t_start = time.time()
    try:
        certs = make_certs(tmp)
        html = os.path.join(tmp, "html")
        os.makedirs(html)
        if "bulk" in only:
            make_file(os.path.join(html, "1g.bin"), size)
        nginx, nports = start_nginx(tmp, certs, html)
        servers.append(nginx)

        if "handshake" in only:
            cports = {}
            cor = {}
            for name, (crt, key) in certs.items():
                cports[name] = free_port()
                cor[name] = start(f"coring-hs-{name}", [coring_bin, "handshake", crt, key, str(cports[name])],
                                  cports[name])
            for name in certs:
                print(f"negotiated (s_client -brief), {name}: nginx  {negotiated(nports[name])}", file=sys.stderr)
                print(f"negotiated (s_client -brief), {name}: coring {negotiated(cports[name])}", file=sys.stderr)
            cases = [(c, reuse) for c in certs for reuse in (False, True)]
            for rep in range(args.reps):
                for cert, reuse in cases:
                    order = [("nginx", nginx, nports[cert]), ("coring", cor[cert], cports[cert])]
                    if rep % 2:
                        order.reverse()
                    for who, srv, port in order:
                        print(f"[rep {rep + 1}/{args.reps}] handshake {cert} {'resumed' if reuse else 'full'} "
                              f"{who}", file=sys.stderr)
                        add(("hs", cert, reuse, who), s_time(srv, port, reuse, args.seconds))
            for s in cor.values():
                stop(s)

        if "bulk" in only:
            crt, key = certs["ecdsa"]
            cport, sport = free_port(), free_port()
            cb = start("coring-bulk", [coring_bin, "bulk", crt, key, str(cport), "--file",
                                       os.path.join(html, "1g.bin")], cport)
            ss = start("s_server", ["openssl", "s_server", "-accept", str(sport), "-cert", crt, "-key", key, "-WWW",
                                    "-quiet", "-ciphersuites", "TLS_AES_128_GCM_SHA256"], sport, cwd=html)
            order = [("nginx", nginx, nports["ecdsa"]), ("coring", cb, cport), ("s_server", ss, sport)]
            for rep in range(args.reps):
                for who, srv, port in (order if rep % 2 == 0 else list(reversed(order))):
                    print(f"[rep {rep + 1}/{args.reps}] bulk {who}", file=sys.stderr)
                    add(("bulk", who), bulk(srv, f"https://127.0.0.1:{port}/1g.bin", crt, size))
            stop(cb)
            stop(ss)

        if "idle" in only:
            crt, key = certs["ecdsa"]
            for rep in range(args.reps):
                for who in (("nginx", "coring") if rep % 2 == 0 else ("coring", "nginx")):
                    print(f"[rep {rep + 1}/{args.reps}] idle {who}", file=sys.stderr)
                    if who == "nginx":
                        # a fresh nginx each time, so that earlier runs' connections do not hide in its free lists
                        stop(nginx)
                        nginx, nports = start_nginx(tmp, certs, html)
                        servers.append(nginx)
                        add(("idle", who), idle(nginx, nports["ecdsa"], args.idle))
                    else:
                        port = free_port()
                        ci = start("coring-idle", [coring_bin, "idle", crt, key, str(port)], port)
                        add(("idle", who), idle(ci, port, args.idle))
                        stop(ci)

        hello_note = ""
        if "wrk" in only:
            crt, key = certs["ecdsa"]
            order = [("nginx", nginx, nports["ecdsa"])]
            https = args.https or os.path.join(os.path.dirname(coring_bin), "http_tls_hello_coring")
            if os.path.exists(https):
                port = free_port()
                order.append(("coring", start("coring-https", [os.path.abspath(https), crt, key, str(port)], port),
                              port))
            if args.hello:
                port = free_port()
                try:
                    order.append(("hello_server", start("coring-hello", [os.path.abspath(args.hello), "--tls", crt,
                                                                         key, f"127.0.0.1:{port}"], port), port))
                except RuntimeError as e:
                    hello_note = f"coring hello_server --tls did not start: {e}"
            else:
                hello_note = "hello_server: no --hello given (examples/http/hello_server --tls), row skipped"
            for rep in range(args.reps):
                for who, srv, port in (order if rep % 2 == 0 else list(reversed(order))):
                    print(f"[rep {rep + 1}/{args.reps}] wrk {who}", file=sys.stderr)
                    add(("wrk", who), wrk(srv, f"https://127.0.0.1:{port}/", args.seconds))
    finally:
        for s in list(servers):
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    # -----------------------------------------------------------------------------------------------------------------
    print(f"TLS servers pinned to CPU {SERVER_CPU}, clients on CPU {GEN_CPU}, loopback; OpenSSL "
          f"{subprocess.run(['openssl', 'version'], capture_output=True, text=True).stdout.split()[1]}; median of "
          f"{args.reps}; load average {load_before} before, {load()} after; {time.time() - t_start:.0f} s")
    print()
    if "handshake" in only:
        print(f"Handshakes: openssl s_time -www / -new|-reuse -time {args.seconds} (one connection at a time), "
              f"TLS 1.3, X25519")
        print()
        rows = []
        for cert in ("ecdsa", "rsa"):
            for reuse in (False, True):
                k = ("hs", cert, reuse)
                n_r, c_r = med(results, k + ("nginx",), "rate"), med(results, k + ("coring",), "rate")
                n_u, c_u = med(results, k + ("nginx",), "us_op"), med(results, k + ("coring",), "us_op")
                res = ""
                if reuse:
                    res = (f"{pct(med(results, k + ('nginx',), 'resumed'))} / "
                           f"{pct(med(results, k + ('coring',), 'resumed'))}")
                other = max(med(results, k + (w,), "other") for w in ("nginx", "coring"))
                rows.append([f"{'resumed' if reuse else 'full'} {'ECDSA P-256' if cert == 'ecdsa' else 'RSA-2048'}",
                             f0(n_r), f0(c_r), ratio(c_r, n_r), f1(n_u), f1(c_u), ratio(c_u, n_u), res or "-",
                             pct(other)])
        table(["handshake", "nginx hs/s", "coring hs/s", "coring/nginx", "nginx srv us/hs", "coring srv us/hs",
               "coring/nginx CPU", "resumed n/c", "other@cpu0 max"], rows)

    if "bulk" in only:
        print(f"Bulk: {args.size} MiB over one TLS 1.3 connection, TLS_AES_128_GCM_SHA256, "
              f"curl -o /dev/null (ECDSA certificate)")
        print()
        rows = []
        n_m = med(results, ("bulk", "nginx"), "mibs")
        n_c = med(results, ("bulk", "nginx"), "cpu_gib")
        for who in ("nginx", "coring", "s_server"):
            m, c = med(results, ("bulk", who), "mibs"), med(results, ("bulk", who), "cpu_gib")
            rows.append([who, f0(m), ratio(m, n_m), f"{c:.2f}" if c is not None else "-", ratio(c, n_c),
                         pct(med(results, ("bulk", who), "other"))])
        table(["server", "MiB/s", "vs nginx", "srv CPU s/GiB", "CPU vs nginx", "other@cpu0"], rows)

    if "idle" in only:
        print(f"Idle connections: {args.idle} TLS 1.3 connections (ECDSA) held by a Python asyncio ssl client "
              f"after the handshake; server VmRSS delta / {args.idle}")
        print()
        rows = []
        n_k = med(results, ("idle", "nginx"), "kib_conn")
        for who in ("nginx", "coring"):
            rs = results.get(("idle", who), [])
            if not rs:
                continue
            k = med(results, ("idle", who), "kib_conn")
            rows.append([who, f1(k), ratio(k, n_k), f"{rs[-1]['before']:,} -> {rs[-1]['after']:,}",
                         str(rs[-1]["held"])])
        table(["server", "KiB/conn", "vs nginx", "VmRSS KiB (last run)", "fds held"], rows)

    if "wrk" in only:
        print(f"HTTPS keep-alive hello world: wrk -t1 -c64 -d{args.seconds}s https://127.0.0.1:PORT/ (ECDSA, TLS 1.3)")
        print()
        rows = []
        n_r, n_u = med(results, ("wrk", "nginx"), "rps"), med(results, ("wrk", "nginx"), "us_op")
        for who in ("nginx", "coring", "hello_server"):
            if ("wrk", who) not in results:
                continue
            r, u = med(results, ("wrk", who), "rps"), med(results, ("wrk", who), "us_op")
            errs = "; ".join(sorted({x["errors"] for x in results[("wrk", who)] if x["errors"]})) or "-"
            rows.append([who, f0(r), ratio(r, n_r), f1(u), ratio(u, n_u), pct(med(results, ("wrk", who), "other")),
                         errs])
        table(["server", "req/s", "vs nginx", "srv us/req", "CPU vs nginx", "other@cpu0", "errors"], rows)
        if hello_note:
            print(hello_note)
            print()


if __name__ == "__main__":
    main()
