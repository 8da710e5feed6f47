#!/usr/bin/env python3
"""Runs coring programs under no_io_uring (io_uring refused with EPERM by a seccomp filter, as in Docker) and checks
what a user would see there: the program works, on the epoll backend, and says so once on stderr.

    seccomp_driver.py LAUNCHER run [--expect REGEX]... [--exit N] [--stderr REGEX] [--notice once|none|off]
                                   -- PROGRAM [ARGS...]
    seccomp_driver.py LAUNCHER copy COPY
    seccomp_driver.py LAUNCHER port_scan PORT_SCAN
    seccomp_driver.py LAUNCHER echo [SERVER OPTIONS] ECHO_SERVER ECHO_CLIENT
    seccomp_driver.py LAUNCHER chat CHAT_SERVER
    seccomp_driver.py LAUNCHER http [SERVER OPTIONS] HELLO_SERVER FETCH

SERVER OPTIONS: --threads N (the server runs N loops, and must say how many connections each accepted), --signal
INT|TERM (what stops it; TERM), --notice once|none (as for run; once).

Every coring program is started as `LAUNCHER PROGRAM ARGS...`. A check that fails prints what was expected, the
program's output and exits 1. The notice's wording is not fixed: a notice is a line of standard error that mentions
epoll, in any case, and a process prints one (--notice once, for every example). --notice none: no line may mention
epoll. --notice off: CORING_BACKEND_NOTICE=0 silences it and nothing is checked, for the unit test binary, whose
cases capture standard error and compare it (the once-per-process notice would land in the first capture).

CORING_BACKEND and CORING_BACKEND_NOTICE are otherwise removed from the programs' environment: the fallback must come
from the refused io_uring_setup, not from the variable that forces epoll, and the notice must not be silenced.

With /usr/bin/env as the LAUNCHER and --notice none, the same scenarios run the servers on io_uring.
"""

import argparse
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# A program that hangs is killed after this long, so that CTest's timeout (120 s) does not hide its output.
RUN_TIMEOUT = 100
# How long a server may take to print the address it listens on, and to stop after SIGTERM.
SERVER_TIMEOUT = 20
# Network reads by the driver's own clients.
IO_TIMEOUT = 10

NOTICE = re.compile(r"epoll", re.IGNORECASE)
# What coring says when it cannot create a loop (include/coring/detail/ring.hpp): the fallback did not happen.
NO_FALLBACK = "cannot create an event loop"


class Failure(Exception):
    pass


def environment(notice="once"):
    env = dict(os.environ)
    env.pop("CORING_BACKEND", None)
    env.pop("CORING_BACKEND_NOTICE", None)
    if notice == "off":
        env["CORING_BACKEND_NOTICE"] = "0"
    return env


def show(title, text):
    text = text if text.endswith("\n") or not text else text + "\n"
    sys.stdout.write(f"---- {title} ----\n{text}")
    sys.stdout.flush()


def check_notice(name, stderr, mode):
    if mode == "off":
        return
    lines = [line for line in stderr.splitlines() if NOTICE.search(line)]
    if mode == "none":
        if lines:
            raise Failure(f"{name}: standard error mentions epoll, and should not:\n  " + "\n  ".join(lines))
        return
    if not lines:
        hint = ""
        if NO_FALLBACK in stderr:
            hint = " (coring refused to start instead of falling back to epoll)"
        raise Failure(f"{name}: no line of standard error mentions epoll: no notice of the fallback{hint}")
    if len(lines) != 1:
        raise Failure(f"{name}: {len(lines)} lines of standard error mention epoll, expected one notice:\n  " +
                      "\n  ".join(lines))
    print(f"{name}: notice: {lines[0]}")


def check_output(name, stdout, expects):
    for pattern in expects:
        if not re.search(pattern, stdout, re.MULTILINE):
            raise Failure(f"{name}: standard output does not match {pattern!r}")


def run(launcher, argv, *, expects=(), exit_status=0, stderr_expect=None, notice="once", cwd=None):
    """Runs `launcher argv...` to its end; returns its standard output."""
    name = os.path.basename(argv[0])
    command = [launcher, *argv]
    print("$ " + " ".join(command))
    sys.stdout.flush()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                               env=environment(notice), cwd=cwd)
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM first: Catch2 then names the test case that hangs, and a server example stops as it should.
        process.terminate()
        try:
            stdout, stderr = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        show(f"{name}: standard output", stdout)
        show(f"{name}: standard error", stderr)
        raise Failure(f"{name}: still running after {RUN_TIMEOUT} s: stopped")
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    show(f"{name}: standard output", done.stdout)
    show(f"{name}: standard error", done.stderr)
    if done.returncode != exit_status:
        hint = ""
        if NO_FALLBACK in done.stderr or NO_FALLBACK in done.stdout:  # Catch2 reports exceptions on stdout
            hint = ": coring refused to start instead of falling back to epoll"
        raise Failure(f"{name}: exit status {_status(done.returncode)}, expected {exit_status}{hint}")
    check_output(name, done.stdout, expects)
    if stderr_expect is not None and not re.search(stderr_expect, done.stderr, re.MULTILINE):
        raise Failure(f"{name}: standard error does not match {stderr_expect!r}")
    check_notice(name, done.stderr, notice)
    return done.stdout


def _status(code):
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            return str(code)
    return str(code)


class Server:
    """A server example under the launcher: started on a free port, read up to the address it prints first, stopped
    with SIGTERM (the launcher execs, so its PID is the server's)."""

    def __init__(self, launcher, program, args=("127.0.0.1:0",), notice="once"):
        self.name = os.path.basename(program)
        command = [launcher, program, *args]
        print("$ " + " ".join(command) + " &")
        sys.stdout.flush()
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        errors="replace", env=environment(notice))
        self.lines = queue.Queue()
        self.stdout = []
        self.stderr = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self.stdout, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, self.stderr, None), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, into, lines):
        for line in stream:
            into.append(line)
            if lines is not None:
                lines.put(line)
        if lines is not None:
            lines.put(None)

    def address(self):
        """Waits for `listening on [scheme://]HOST:PORT`; returns (host, port)."""
        deadline = time.monotonic() + SERVER_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise Failure(f"{self.name}: printed no address within {SERVER_TIMEOUT} s")
            if line is None:
                self.process.wait()
                for t in self._threads:  # all of standard error, for the report
                    t.join(timeout=5)
                self.report()
                hint = ""
                if NO_FALLBACK in "".join(self.stderr):
                    hint = ": coring refused to start instead of falling back to epoll"
                raise Failure(f"{self.name}: ended (exit status {_status(self.process.returncode)}) before listening"
                              f"{hint}")
            m = re.match(r"listening on (?:\w+://)?(\S+):(\d+)\s*$", line)
            if m:
                host = m.group(1).strip("[]")
                print(f"{self.name}: listening on {host} port {m.group(2)}")
                return host, int(m.group(2))

    def stop(self, expects=(), sig=signal.SIGTERM, notice="once"):
        """Sends `sig`; the server must exit 0 and print the notice as `notice` says."""
        name = signal.Signals(sig).name
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=SERVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failure(f"{self.name}: still running {SERVER_TIMEOUT} s after {name}: killed")
        for t in self._threads:
            t.join(timeout=5)
        self.report()
        if self.process.returncode != 0:
            raise Failure(f"{self.name}: exit status {_status(self.process.returncode)} after {name}, expected 0")
        check_output(self.name, "".join(self.stdout), expects)
        check_notice(self.name, "".join(self.stderr), notice)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for t in self._threads:
            t.join(timeout=5)
        self.report()

    def report(self):
        show(f"{self.name}: standard output", "".join(self.stdout))
        show(f"{self.name}: standard error", "".join(self.stderr))


def serving(launcher, program, body, args=None):
    """Starts the server, runs body(server, host, port), stops the server; kills it whatever happens. `args` holds
    the scenario's server options (--threads, --signal, --notice), if it has them."""
    extra, sig, notice = ["127.0.0.1:0"], signal.SIGTERM, "once"
    if args is not None:
        if args.threads:
            extra += ["--threads", str(args.threads), "--stats"]
        sig = signal.Signals["SIG" + args.signal]
        notice = args.notice
    server = Server(launcher, program, extra, notice)
    try:
        host, port = server.address()
        expects = body(server, host, port)
        if args is not None and args.threads:
            # --stats: one count per loop, each a number (how the kernel spread a handful of connections varies).
            expects = list(expects or ()) + [r"^accepted:" + "".join(rf" loop {i}: [0-9]+" for i in
                                                                   range(args.threads)) + "$"]
        server.stop(expects or (), sig, notice)
    finally:
        if server.process.poll() is None:
            server.kill()


# ---- scenarios -----------------------------------------------------------------------------------------------------


def scenario_run(launcher, args):
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise Failure("run: no program given (put it after --)")
    run(launcher, command, expects=args.expect, exit_status=args.exit, stderr_expect=args.stderr, notice=args.notice)


def scenario_copy(launcher, args):
    with tempfile.TemporaryDirectory(prefix="coring-seccomp-") as d:
        src, dst = os.path.join(d, "in.bin"), os.path.join(d, "out.bin")
        # 8 MiB and a bit, in blocks of 256 KiB: many reads and writes in flight, and a short last block.
        data = os.urandom(8 * 1024 * 1024 + 12345)
        with open(src, "wb") as f:
            f.write(data)
        run(launcher, [args.copy, src, dst, "--block-size", "262144"], expects=[rf"copied {len(data)} bytes"])
        with open(dst, "rb") as f:
            if f.read() != data:
                raise Failure("copy: the copy differs from the original")
        print(f"copy: {len(data)} bytes copied and compared")


def scenario_port_scan(launcher, args):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        last = min(port + 7, 65535)
        run(launcher, [args.port_scan, "127.0.0.1", str(port), str(last), "8", "2000"],
            expects=[rf"^{port} open$", rf"^{last - port + 1} ports in [0-9]+ ms"])


def _recv_exact(sock, n):
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(65536, n - got))
        if not chunk:
            raise Failure(f"the connection ended after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def scenario_echo(launcher, args):
    def body(server, host, port):
        for size in (13, 1024 * 1024):
            payload = os.urandom(size)
            with socket.create_connection((host, port), timeout=IO_TIMEOUT) as s:
                # Send from a thread while reading here: a large payload would fill both socket buffers otherwise.
                sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
                sender.start()
                back = _recv_exact(s, size)
                sender.join()
            if back != payload:
                raise Failure(f"echo_server: {size} bytes came back different")
            print(f"echo_server: {size} bytes echoed")
        run(launcher, [args.echo_client, f"{host}:{port}", "4", "64", "1"], expects=[r"round trips/s"],
            notice=args.notice)
        return [rf"^stopped: SIG{args.signal}$"]

    serving(launcher, args.echo_server, body, args)


def _read_line(f, name):
    line = f.readline()
    if not line:
        raise Failure(f"chat_server: {name}'s connection ended")
    return line.rstrip("\n")


def scenario_chat(launcher, args):
    def body(server, host, port):
        with socket.create_connection((host, port), timeout=IO_TIMEOUT) as a, \
                socket.create_connection((host, port), timeout=IO_TIMEOUT) as b:
            fa, fb = a.makefile("r", encoding="utf-8"), b.makefile("r", encoding="utf-8")
            welcome_a, welcome_b = _read_line(fa, "A"), _read_line(fb, "B")
            if not welcome_a.startswith("* welcome, ") or not welcome_b.startswith("* welcome, "):
                raise Failure(f"chat_server: unexpected greetings {welcome_a!r} and {welcome_b!r}")
            name_a = welcome_a[len("* welcome, "):]
            a.sendall(b"hello from A\n")
            expected = f"{name_a}: hello from A"
            for _ in range(10):  # B may first hear of other arrivals
                line = _read_line(fb, "B")
                if line == expected:
                    break
            else:
                raise Failure(f"chat_server: B never received {expected!r}")
            print(f"chat_server: B received {expected!r}")
        return [r"joined", r"^stopped: SIGTERM$"]

    serving(launcher, args.chat_server, body)


def scenario_http(launcher, args):
    def body(server, host, port):
        base = f"http://{host}:{port}"
        # No proxy: http_proxy in the environment must not route loopback requests elsewhere.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for path, data, want in (("/", None, '{"message": "Hello, World"}'),
                                 ("/hello/Ada", None, '{"message": "Hello, Ada"}'),
                                 ("/echo", b"some text", "some text")):
            with opener.open(urllib.request.Request(base + path, data=data), timeout=IO_TIMEOUT) as r:
                text = r.read().decode()
                if r.status != 200 or want not in text:
                    raise Failure(f"hello_server: {path} answered {r.status} {text!r}, expected {want!r}")
            print(f"hello_server: {'POST' if data else 'GET'} {path}: {text.strip()}")
        run(launcher, [args.fetch, base + "/hello/Ada"], expects=[r"^HTTP/1\.1 200", r"Hello, Ada"],
            notice=args.notice)
        return [rf"^stopping on SIG{args.signal}$"]

    serving(launcher, args.hello_server, body, args)


def server_options(p):
    p.add_argument("--threads", type=int, default=0, help="run the server with --threads N --stats")
    p.add_argument("--signal", choices=("INT", "TERM"), default="TERM", help="the signal that stops the server")
    p.add_argument("--notice", choices=("once", "none"), default="once")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("launcher", help="the no_io_uring launcher")
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("run", help="run a program to its end")
    p.add_argument("--expect", action="append", default=[], help="a regex its standard output must match")
    p.add_argument("--exit", type=int, default=0, help="the exit status it must end with (0)")
    p.add_argument("--stderr", help="a regex its standard error must match")
    p.add_argument("--notice", choices=("once", "none", "off"), default="once")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=scenario_run)
    p = sub.add_parser("copy")
    p.add_argument("copy")
    p.set_defaults(func=scenario_copy)
    p = sub.add_parser("port_scan")
    p.add_argument("port_scan")
    p.set_defaults(func=scenario_port_scan)
    p = sub.add_parser("echo")
    server_options(p)
    p.add_argument("echo_server")
    p.add_argument("echo_client")
    p.set_defaults(func=scenario_echo)
    p = sub.add_parser("chat")
    p.add_argument("chat_server")
    p.set_defaults(func=scenario_chat)
    p = sub.add_parser("http")
    server_options(p)
    p.add_argument("hello_server")
    p.add_argument("fetch")
    p.set_defaults(func=scenario_http)
    args = parser.parse_args()

    if not os.access(args.launcher, os.X_OK) and shutil.which(args.launcher) is None:
        print(f"seccomp_driver: no launcher at {args.launcher}", file=sys.stderr)
        return 2
    try:
        args.func(args.launcher, args)
    except Failure as e:
        print(f"FAILED: {e}")
        return 1
    except OSError as e:  # a client of the driver's own: refused, reset, timed out
        print(f"FAILED: {e.__class__.__name__}: {e}")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
