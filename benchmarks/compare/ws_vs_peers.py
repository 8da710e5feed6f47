#!/usr/bin/python3
"""coring's WebSocket server beside the servers an asyncio, Node or Go programmer would pick, in one run.

    /usr/bin/python3 benchmarks/compare/ws_vs_peers.py --build build/bench
    /usr/bin/python3 benchmarks/compare/ws_vs_peers.py --build build/bench --seconds 5 --reps 3 --only coring,node-ws

    /usr/bin/python3 benchmarks/compare/ws_vs_peers.py --build build/bench --size 2048 --deflate

Servers (each pinned to CPU 0 with taskset, one process, one thread where the runtime allows; compression off unless
--deflate, which turns permessage-deflate on in every server with its own defaults and makes the generator offer and
require it):
  coring            benchmarks/peers/http_ws_server_coring (coring::http)
  aiohttp           aiohttp's web.WebSocketResponse on asyncio's default loop (Debian's python3-aiohttp)
  aiohttp-uvloop    the same on uvloop (python3-uvloop)
  websockets        Python's websockets library (python3-websockets), on asyncio
  node-ws           Node's `ws` package (npm install ws, into a temporary directory unless --node-modules is given)
  go-gorilla        Go with github.com/gorilla/websocket (Debian's golang-github-gorilla-websocket-dev), GOMAXPROCS=1

Every server does the same on two paths: /echo sends every message back; /room sends every message to every member
(websockets.broadcast, a loop of send_str, ws's send per client, a writer goroutine per client in Go: each peer's
documented way). The load generator is one program for all, benchmarks/peers/http_ws_load_coring, pinned to CPU 1:

  echo    64 connections in closed loops of one text message (--size bytes of JSON-like text, 64 by default) and
          its echo, for --seconds.
  fanout  1,000 members of /room; one sends a burst of 10 messages of --size bytes, and waits until all 1,000 have
          all 10 (10,000 deliveries), again and again for --seconds.

Reported, over the measured phase only (after the connections are open, before they close): the rate (round trips
or deliveries per second), the server's CPU time per message (/proc/PID/stat utime+stime, all threads), how busy
CPU 0 was with anything else meanwhile, and the server's memory (VmRSS, its peak) with the connections open. With two cores the generator (CPU 1) is often the
bound: compare servers on CPU per message. The order of the servers alternates between repetitions; medians shown.

Standard library only; needs taskset, python3 (Debian's, with aiohttp, uvloop and websockets), node and npm, go.
A peer whose runtime is missing is skipped with the reason.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from server_process import GEN_CPU, SERVER_CPU, Server, cpu0_busy, cpu_seconds, free_port, rss_kib

PYTHON = "/usr/bin/python3"

AIOHTTP_SERVER = r"""
import asyncio, sys
from aiohttp import web, WSMsgType
DEFLATE = sys.argv[3] == "deflate"
if sys.argv[2] == "uvloop":
    import uvloop
    uvloop.install()
room = set()
async def echo(request):
    ws = web.WebSocketResponse(compress=DEFLATE, max_msg_size=0)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws
async def chat(request):
    ws = web.WebSocketResponse(compress=DEFLATE, max_msg_size=0)
    await ws.prepare(request)
    room.add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                for other in list(room):
                    await other.send_str(msg.data)
    finally:
        room.discard(ws)
    return ws
app = web.Application()
app.add_routes([web.get("/echo", echo), web.get("/room", chat)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), backlog=4096, print=lambda *a: print("listening", flush=True))
"""

WEBSOCKETS_SERVER = r"""
import asyncio, signal, sys
import websockets
room = set()
async def handler(ws, path=None):
    path = path or ws.path
    if path == "/echo":
        async for msg in ws:
            await ws.send(msg)
    else:
        room.add(ws)
        try:
            async for msg in ws:
                websockets.broadcast(room, msg)
        finally:
            room.discard(ws)
async def main():
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with websockets.serve(handler, "127.0.0.1", int(sys.argv[1]), backlog=4096, max_queue=None, max_size=None,
                                compression="deflate" if sys.argv[2] == "deflate" else None):
        print("listening", flush=True)
        await stop
asyncio.run(main())
"""

NODE_SERVER = r"""
const { WebSocketServer } = require("ws");
const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(process.argv[2]),
                                  perMessageDeflate: process.argv[3] === "deflate", backlog: 4096,
                                  maxPayload: 1 << 30 });
const room = new Set();
wss.on("connection", (ws, req) => {
  if (req.url === "/echo") {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else {
    room.add(ws);
    ws.on("message", (data, isBinary) => { for (const c of room) c.send(data, { binary: isBinary }); });
    ws.on("close", () => room.delete(ws));
  }
});
wss.on("listening", () => console.log("listening"));
process.on("SIGTERM", () => process.exit(0));
"""

GO_SERVER = r"""
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/gorilla/websocket"
)

var upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096,
	CheckOrigin: func(r *http.Request) bool { return true }}

type member struct {
	conn *websocket.Conn
	out  chan []byte
}

var (
	mu   sync.Mutex
	room = map[*member]bool{}
)

func echo(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	for {
		t, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if c.WriteMessage(t, msg) != nil {
			return
		}
	}
}

func chat(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	m := &member{conn: c, out: make(chan []byte, 256)}
	mu.Lock()
	room[m] = true
	mu.Unlock()
	go func() {
		for msg := range m.out {
			if c.WriteMessage(websocket.TextMessage, msg) != nil {
				return
			}
		}
	}()
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			break
		}
		mu.Lock()
		for o := range room {
			select {
			case o.out <- msg:
			default:
			}
		}
		mu.Unlock()
	}
	mu.Lock()
	delete(room, m)
	mu.Unlock()
	close(m.out)
	c.Close()
}

func main() {
	upgrader.EnableCompression = len(os.Args) > 2 && os.Args[2] == "deflate"
	http.HandleFunc("/echo", echo)
	http.HandleFunc("/room", chat)
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		panic(err)
	}
	fmt.Println("listening")
	http.Serve(l, nil)
}
"""


def parse(out):
    kv = dict(part.split("=", 1) for part in out.split() if "=" in part)
    return int(kv["messages"]), float(kv["seconds"])


def measure(server, load, argv, seconds):
    """Runs the generator once; returns (messages, seconds, server CPU s, other@cpu0 fraction, server RSS KiB).

    Only the measured phase counts: the generator prints "ready" once its connections are open and its result as
    soon as the phase ends (before it closes them), and the server's CPU time is read at those two lines; the RSS is
    the server's peak over the phase."""
    pid = server.proc.pid
    proc = subprocess.Popen(["taskset", "-c", GEN_CPU, load] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    cpu0 = busy0 = None
    result = None
    peak = 0
    for line in proc.stdout:
        if line.startswith("ready"):
            cpu0, busy0 = cpu_seconds([pid]), cpu0_busy()
            peak = rss_kib([pid])
        elif line.startswith("messages="):
            cpu = cpu_seconds([pid]) - cpu0
            other = max(0.0, cpu0_busy() - busy0 - cpu)
            peak = max(peak, rss_kib([pid]))
            result = line
    try:
        proc.wait(seconds + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
    err = proc.stderr.read()
    if proc.returncode != 0 or result is None or cpu0 is None:
        raise RuntimeError(f"load generator failed against {server.name}: {err.strip()[-400:]}")
    messages, took = parse(result)
    return messages, took, cpu, other / took if took > 0 else 0.0, peak


def servers(args, tmp):
    """name -> (argv, env, cwd) or the reason it cannot run."""
    out = {}
    coring = os.path.join(args.build, "benchmarks", "http_ws_server_coring")
    mode = "deflate" if args.deflate else "plain"
    out["coring"] = ([coring, "{port}"] + (["--deflate"] if args.deflate else []), None, None) \
        if os.access(coring, os.X_OK) else f"no {coring}"
    aio = os.path.join(tmp, "aiohttp_server.py")
    with open(aio, "w") as f:
        f.write(AIOHTTP_SERVER)
    have = subprocess.run([PYTHON, "-c", "import aiohttp"], capture_output=True).returncode == 0
    out["aiohttp"] = ([PYTHON, aio, "{port}", "asyncio", mode], None, None) if have else \
        "no aiohttp for /usr/bin/python3"
    have_uv = have and subprocess.run([PYTHON, "-c", "import uvloop"], capture_output=True).returncode == 0
    out["aiohttp-uvloop"] = ([PYTHON, aio, "{port}", "uvloop", mode], None, None) if have_uv else "no uvloop"
    wsp = os.path.join(tmp, "websockets_server.py")
    with open(wsp, "w") as f:
        f.write(WEBSOCKETS_SERVER)
    have = subprocess.run([PYTHON, "-c", "import websockets"], capture_output=True).returncode == 0
    out["websockets"] = ([PYTHON, wsp, "{port}", mode], None, None) if have else \
        "no websockets for /usr/bin/python3"
    node = shutil.which("node")
    modules = args.node_modules
    if node and not modules and shutil.which("npm"):
        d = os.path.join(tmp, "node")
        os.makedirs(d)
        r = subprocess.run(["npm", "install", "--silent", "--prefix", d, "ws@8"], capture_output=True, text=True)
        modules = os.path.join(d, "node_modules") if r.returncode == 0 else None
    if node and modules and os.path.isdir(os.path.join(modules, "ws")):
        js = os.path.join(tmp, "server.js")
        with open(js, "w") as f:
            f.write(NODE_SERVER)
        env = dict(os.environ, NODE_PATH=modules)
        out["node-ws"] = ([node, js, "{port}", mode], env, None)
    else:
        out["node-ws"] = "no node, or npm could not install ws"
    go = shutil.which("go")
    gopath = "/usr/share/gocode"
    if go and os.path.isdir(os.path.join(gopath, "src/github.com/gorilla/websocket")):
        d = os.path.join(tmp, "go")
        os.makedirs(d)
        with open(os.path.join(d, "main.go"), "w") as f:
            f.write(GO_SERVER)
        env = dict(os.environ, GO111MODULE="off", GOPATH=gopath, GOCACHE=os.path.join(tmp, "gocache"))
        exe = os.path.join(d, "server")
        r = subprocess.run([go, "build", "-o", exe, "main.go"], cwd=d, env=env, capture_output=True, text=True)
        if r.returncode == 0:
            out["go-gorilla"] = ([exe, "{port}", mode], dict(os.environ, GOMAXPROCS="1"), None)
        else:
            out["go-gorilla"] = "go build failed: " + r.stderr.strip()[-300:]
    else:
        out["go-gorilla"] = "no go, or no gorilla/websocket (Debian: golang-github-gorilla-websocket-dev)"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build/bench", help="coring's build directory (benchmarks/ under it)")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated server names")
    ap.add_argument("--workloads", default="echo,fanout")
    ap.add_argument("--node-modules", default="", help="a node_modules with ws, instead of npm install")
    ap.add_argument("--size", type=int, default=64, help="message size in bytes (JSON-like text)")
    ap.add_argument("--deflate", action="store_true",
                    help="every server with permessage-deflate on, the generator offering it (and requiring it)")
    args = ap.parse_args()
    load = os.path.join(args.build, "benchmarks", "http_ws_load_coring")
    if not os.access(load, os.X_OK):
        sys.exit(f"no {load}: build the benchmarks first")
    workloads = args.workloads.split(",")
    tmp = tempfile.mkdtemp(prefix="ws-peers-")
    try:
        table = servers(args, tmp)
        names = [n for n in table if not args.only or n in args.only.split(",")]
        for n in names:
            if isinstance(table[n], str):
                print(f"# skipped {n}: {table[n]}")
        names = [n for n in names if not isinstance(table[n], str)]
        results = {(n, w): [] for n in names for w in workloads}
        for rep in range(args.reps):
            order = names if rep % 2 == 0 else list(reversed(names))
            for n in order:
                argv, env, cwd = table[n]
                port = free_port()
                server = Server(n, [a.replace("{port}", str(port)) for a in argv], port, tmp, env=env, cwd=cwd)
                try:
                    for w in workloads:
                        if w == "echo":
                            gen = ["echo", str(port), "64", str(args.seconds), str(args.size)]
                        else:
                            gen = ["fanout", str(port), "1000", str(args.seconds), str(args.size), "10"]
                        if args.deflate:
                            gen.append("deflate")
                        results[(n, w)].append(measure(server, load, gen, args.seconds))
                finally:
                    server.stop()
        print(f"# ws_vs_peers.py --seconds {args.seconds} --reps {args.reps} --size {args.size}"
              f"{' --deflate' if args.deflate else ''}; server on CPU {SERVER_CPU}, "
              f"generator (http_ws_load_coring) on CPU {GEN_CPU}; medians")
        for w in workloads:
            what = f"{args.size}-byte echo, 64 connections" if w == "echo" else \
                f"fan-out of {args.size}-byte messages to 1,000 members, bursts of 10"
            if args.deflate:
                what += ", permessage-deflate"
            unit = "round trips/s" if w == "echo" else "deliveries/s"
            print(f"\n## {w}: {what}")
            print(f"| server | {unit} | server CPU us/msg | server CPU % | other@cpu0 | server RSS MiB |")
            print("|---|---:|---:|---:|---:|---:|")
            for n in names:
                rows = results[(n, w)]
                rate = statistics.median(m / s for m, s, _, _, _ in rows)
                us = statistics.median(c / m * 1e6 for m, _, c, _, _ in rows if m)
                busy = statistics.median(c / s * 100 for _, s, c, _, _ in rows)
                other = statistics.median(o * 100 for _, _, _, o, _ in rows)
                rss = statistics.median(r for _, _, _, _, r in rows) / 1024
                print(f"| {n} | {rate:,.0f} | {us:.2f} | {busy:.0f} | {other:.0f}% | {rss:.1f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
