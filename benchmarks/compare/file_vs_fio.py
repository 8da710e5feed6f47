#!/usr/bin/python3
"""coring's file reads beside fio's io_uring and psync engines, on the same 1 GiB file in the page cache, in one run.

    /usr/bin/python3 benchmarks/compare/file_vs_fio.py --coring build/bench/benchmarks/file_read_coring
    /usr/bin/python3 benchmarks/compare/file_vs_fio.py --coring ... --file /path/to/1g.dat --seconds 3 --reps 3
    /usr/bin/python3 benchmarks/compare/file_vs_fio.py --coring NEW --baseline OLD   # a change A/B, same run

Workloads (as ../shared/peers/run file measures fio): sequential 1 MiB reads and random 4 KiB reads, at queue depth
1, 8 and 32, buffered (direct=0, invalidate=0: the file stays cached). Every job runs pinned to the same CPU
(taskset -c 0); the order of the engines alternates between repetitions, and the table shows medians, so that the
machine's drift hits every engine alike. psync has no queue: it is one synchronous pread at a time whatever the
depth, and is shown once per pattern.

Standard library only; needs fio and taskset on PATH.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

CPU = "0"


def fio(path, rw, bs, engine, depth, seconds):
    cmd = ["taskset", "-c", CPU, "fio", "--name=j", f"--filename={path}", "--size=1G", f"--rw={rw}", f"--bs={bs}",
           f"--ioengine={engine}", f"--iodepth={depth}", "--direct=0", "--invalidate=0", "--time_based",
           f"--runtime={seconds}", "--output-format=json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    j = json.loads(r.stdout[r.stdout.index("{"):])
    job = j["jobs"][0]
    if job.get("error", 0):
        raise RuntimeError(f"fio {engine} {rw} failed: {job['error']}")
    return job["read"]["iops"]


def coring(binary, path, rw, bs, depth, seconds):
    size = {"4k": 4096, "1M": 1 << 20}[bs]
    cmd = ["taskset", "-c", CPU, binary, path, rw, str(size), str(depth), str(seconds)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise RuntimeError(f"{binary} failed: {r.stderr.strip()}")
    fields = dict(kv.split("=") for kv in r.stdout.split())
    return float(fields["iops"])


def fmt(x):
    return f"{x:,.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coring", required=True, help="path to the file_read_coring binary (release build)")
    ap.add_argument("--file", default="/tmp/coring-fio-1g.dat", help="the 1 GiB test file (created if missing)")
    ap.add_argument("--seconds", type=int, default=2, help="measured seconds per job")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (medians are shown)")
    ap.add_argument("--depths", default="1,8,32")
    ap.add_argument("--baseline", help="another file_read_coring (the code before a change), run beside --coring")
    args = ap.parse_args()
    for tool in ("fio", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"file_vs_fio: {tool} is not installed (apt-get install fio util-linux)")

    size = 1 << 30
    if not os.path.exists(args.file) or os.path.getsize(args.file) != size:
        print(f"laying out {args.file} (1 GiB)", file=sys.stderr)
        subprocess.run(["fio", "--name=layout", f"--filename={args.file}", "--size=1G", "--rw=write", "--bs=1M",
                        "--ioengine=psync", "--end_fsync=1"], capture_output=True, check=True)
    with open(args.file, "rb") as f:  # warm the page cache
        while f.read(1 << 24):
            pass

    depths = [int(d) for d in args.depths.split(",")]
    jobs = []
    for rw, bs in (("read", "1M"), ("randread", "4k")):
        for d in depths:
            jobs.append(("fio-io_uring", rw, bs, d))
            jobs.append(("coring", rw, bs, d))
            if args.baseline:
                jobs.append(("baseline", rw, bs, d))
        jobs.append(("fio-psync", rw, bs, 1))
    results = {}
    for rep in range(args.reps):
        order = jobs if rep % 2 == 0 else list(reversed(jobs))
        for engine, rw, bs, d in order:
            print(f"[rep {rep + 1}/{args.reps}] {engine} {rw} {bs} depth {d}", file=sys.stderr)
            if engine in ("coring", "baseline"):
                iops = coring(args.coring if engine == "coring" else args.baseline, args.file, rw, bs, d,
                              args.seconds)
            else:
                iops = fio(args.file, rw, bs, engine.split("-")[1], d, args.seconds)
            results.setdefault((engine, rw, bs, d), []).append(iops)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"File reads on a 1 GiB file in the page cache, one job pinned to CPU {CPU}, {args.seconds} s each, "
          f"median of {args.reps}")
    print()
    header = ["pattern", "bs", "depth", "fio io_uring IOPS", "coring IOPS", "coring / fio", "fio psync IOPS",
              "coring / psync"]
    if args.baseline:
        header += ["baseline IOPS", "coring / baseline"]
    rows = []
    for rw, bs in (("read", "1M"), ("randread", "4k")):
        for d in depths:
            f_ = med[("fio-io_uring", rw, bs, d)]
            c = med[("coring", rw, bs, d)]
            ps = med[("fio-psync", rw, bs, 1)]
            row = [rw, bs, str(d), fmt(f_), fmt(c), f"{100 * c / f_:.0f}%", fmt(ps), f"{100 * c / ps:.0f}%"]
            if args.baseline:
                b = med[("baseline", rw, bs, d)]
                row += [fmt(b), f"{100 * c / b:.0f}%"]
            rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    main()
