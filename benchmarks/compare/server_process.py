"""Servers under measurement and what /proc says of them, for the scripts beside this one (tls_vs_nginx.py,
ws_vs_peers.py): a server process pinned to CPU 0 in a session of its own, its CPU time, memory and descriptors, how
busy CPU 0 was with anything else, and a free port. Standard library only."""

import os
import signal
import socket
import subprocess
import time

SERVER_CPU = "0"
GEN_CPU = "1"
TICK = os.sysconf("SC_CLK_TCK")


class Server:
    """A server process pinned to CPU 0, in a session of its own (stopped with its whole process group)."""

    def __init__(self, name, argv, port, tmp, cwd=None, env=None, start_limit=20):
        self.name, self.argv, self.port = name, argv, port
        self.log = open(os.path.join(tmp, f"{name}.log"), "w+")
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd, env=env)
        deadline = time.time() + start_limit
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} did not start: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"{name} is not listening on {port}: {self.log_tail()}")
        time.sleep(0.2)

    def pids(self):
        """The processes doing the work: nginx's worker(s), else the process itself (taskset execs it)."""
        kids = []
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = [int(p) for p in f.read().split()]
        except OSError:
            pass
        return kids if self.name.startswith("nginx") and kids else [self.proc.pid]

    def log_tail(self, n=600):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return f.read()[-n:].strip()

    def stop(self):
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None
        self.log.close()


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICK


def cpu0_busy():
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{SERVER_CPU} "):
                v = [int(x) for x in line.split()[1:]]
                return (sum(v[:8]) - v[3] - v[4]) / TICK  # all but idle and iowait
    return 0.0


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def open_fds(pids):
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)


class Meter:
    """Server CPU time and CPU 0's other load over a measurement."""

    def __init__(self, server):
        self.pids = server.pids()
        self.cpu0, self.busy0, self.t0 = cpu_seconds(self.pids), cpu0_busy(), time.time()

    def done(self):
        cpu = cpu_seconds(self.pids) - self.cpu0
        wall = time.time() - self.t0
        other = max(0.0, cpu0_busy() - self.busy0 - cpu)
        return cpu, wall, other / wall if wall > 0 else 0.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
