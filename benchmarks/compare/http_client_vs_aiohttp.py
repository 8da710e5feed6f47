#!/usr/bin/python3
"""coring's HTTP client beside aiohttp's (with and without uvloop), fetching from a local nginx, in one run.

    /usr/bin/python3 benchmarks/compare/http_client_vs_aiohttp.py --coring build/bench/benchmarks/http_client_coring
    /usr/bin/python3 benchmarks/compare/http_client_vs_aiohttp.py --coring ... --https

nginx (one worker, the peers harness's hello-world configuration from ../shared/peers/src/nginx) serves on CPU 0;
each client runs on CPU 1 with CONNS tasks that share one session and fetch the same URL over keep-alive
connections, one request in flight per task. Clients alternate between repetitions; the table shows medians.

--https: the same over TLS. The openssl CLI makes a test CA and an ECDSA P-256 leaf for localhost and 127.0.0.1
signed by it in the temporary directory; nginx serves `listen ... ssl` with that leaf (TLS 1.2 and 1.3 enabled, the rest
OpenSSL's and nginx's defaults: TLS 1.3 is agreed); both clients verify it against the CA (coring:
http_client_coring --cacert CA; aiohttp: an ssl.create_default_context(cafile=CA)) and keep their TLS connections
alive, so handshakes happen in the warm-up.

Standard library only, plus nginx, taskset, openssl (for --https) and Debian's python3-aiohttp (and python3-uvloop
for that row).
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NGINX_CONF = os.path.join(HERE, "..", "..", "..", "shared", "peers", "src", "nginx", "nginx.conf.in")

AIOHTTP = r"""
import asyncio, sys, time
import aiohttp
url, conns, seconds, loop_kind = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
cafile = sys.argv[5] if len(sys.argv) > 5 else None
if loop_kind == "uvloop":
    import uvloop
    uvloop.install()
async def main():
    n = {"req": 0, "err": 0}
    stop = False
    tls = None
    if cafile:
        import ssl
        tls = ssl.create_default_context(cafile=cafile)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conns, ssl=tls)) as s:
        async def worker():
            while not stop:
                try:
                    async with s.get(url) as r:
                        await r.read()
                        n["req"] += 1
                except Exception:
                    n["err"] += 1
        ws = [asyncio.create_task(worker()) for _ in range(conns)]
        await asyncio.sleep(0.5)
        n["req"] = 0
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        stop = True
        done = n["req"]
        el = time.perf_counter() - t0
        await asyncio.gather(*ws)
    print(f"requests={done} seconds={el:.3f} rps={done / el:.0f} errors={n['err']}")
asyncio.run(main())
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certs(d):
    """A test CA and an ECDSA P-256 leaf for localhost and 127.0.0.1 signed by it: (ca, leaf cert, leaf key)."""
    ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    crt, key, csr = os.path.join(d, "leaf.pem"), os.path.join(d, "leaf.key"), os.path.join(d, "leaf.csr")
    ext = os.path.join(d, "leaf.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for cmd in (["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
                 "-subj", "/O=coring bench/CN=coring bench CA",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                ["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", "/O=coring bench/CN=localhost"],
                ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
                 "-sha256", "-extfile", ext, "-out", crt]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"http_client_vs_aiohttp: {' '.join(cmd[:3])} failed: {r.stderr.strip()[-300:]}")
    return ca, crt, key


def negotiated(port, ca):
    """What openssl s_client agrees on with nginx (protocol, suite, key exchange), for the header."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", ca, "-brief"],
                       input="", capture_output=True, text=True, timeout=10)
    got = {}
    for line in r.stderr.splitlines():
        k, _, v = line.partition(":")
        got[k.strip()] = v.strip()
    return ", ".join(got.get(k, "?") for k in ("Protocol version", "Ciphersuite", "Server Temp Key",
                                                 "Verification"))


def start_nginx(port, d, tls=None):
    with open(NGINX_CONF) as f:
        conf = f.read().replace("@PORT@", str(port)).replace("@DIR@", d)
    if tls:
        listen = f"listen 127.0.0.1:{port} backlog=4096;"
        if listen not in conf:
            sys.exit(f"http_client_vs_aiohttp: no '{listen}' in {NGINX_CONF} to add ssl to")
        conf = conf.replace(listen, f"listen 127.0.0.1:{port} backlog=4096 ssl;\n"
                                    f"        ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]};\n"
                                    f"        ssl_protocols TLSv1.2 TLSv1.3;")  # nginx 1.22's default lacks 1.3
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    p = subprocess.Popen(["taskset", "-c", "0", nginx, "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e",
                          os.path.join(d, "error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("http_client_vs_aiohttp: nginx did not start")


def run(cmd, seconds):
    r = subprocess.run(["taskset", "-c", "1"] + cmd, capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {r.stderr.strip()[-300:]}")
    return dict(kv.split("=") for kv in r.stdout.split())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coring", required=True, help="path to http_client_coring (release build)")
    ap.add_argument("--conns", default="1,16,64")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--https", action="store_true", help="over TLS: nginx with a leaf of a test CA both clients trust")
    args = ap.parse_args()
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="coring-nginx-")
    tls = make_certs(tmp) if args.https else None
    nginx = start_nginx(port, tmp, tls and tls[1:])
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
    ca = ["--cacert", tls[0]] if tls else []
    clients = [("coring", lambda c: [args.coring, *ca, url, str(c), str(args.seconds)])]
    for kind in ("asyncio", "uvloop"):
        clients.append((f"aiohttp ({kind})", lambda c, k=kind: ["/usr/bin/python3", "-c", AIOHTTP, url, str(c),
                                                                 str(args.seconds), k] + ([tls[0]] if tls else [])))
    res = {}
    tls_params = negotiated(port, tls[0]) if tls else ""
    try:
        for rep in range(args.reps):
            order = clients if rep % 2 == 0 else list(reversed(clients))
            for conns in [int(c) for c in args.conns.split(",")]:
                for name, cmd in order:
                    print(f"[rep {rep + 1}/{args.reps}] {name} conns={conns}", file=sys.stderr)
                    d = run(cmd(conns), args.seconds)
                    if int(d["errors"]):
                        print(f"  {name}: {d['errors']} errors", file=sys.stderr)
                    res.setdefault((name, conns), []).append(float(d["rps"]))
                    print(f"  {float(d['rps']):,.0f} requests/s", file=sys.stderr)
    finally:
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    conns_list = [int(c) for c in args.conns.split(",")]
    print(f"HTTP{'S' if tls else ''} client: keep-alive GETs of nginx's hello world "
          f"(nginx on CPU 0, client on CPU 1), {args.seconds:g} s each, median of {args.reps}; requests/s")
    if tls:
        print(f"TLS (openssl s_client against the same nginx): {tls_params}")
    print()
    print("| client | " + " | ".join(f"{c} connection{'s' if c > 1 else ''}" for c in conns_list) + " |")
    print("|---|" + "---|" * len(conns_list))
    for name, _ in clients:
        print(f"| {name} | " + " | ".join(f"{statistics.median(res[(name, c)]):,.0f}" for c in conns_list) + " |")
    base = {c: statistics.median(res[("coring", c)]) for c in conns_list}
    for name, _ in clients[1:]:
        print(f"| coring / {name} | " +
              " | ".join(f"{base[c] / statistics.median(res[(name, c)]):.1f}x" for c in conns_list) + " |")


if __name__ == "__main__":
    main()
