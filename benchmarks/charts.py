#!/usr/bin/env python3
"""Turns the benchmark results in benchmarks/results/*.txt into the bar charts the README shows (docs/charts/*.png).

    python3 benchmarks/charts.py            # Debian: apt-get install python3-matplotlib

Each chart is drawn from one results file, exactly as the peer harness (../shared/peers/run) or the fio comparison
printed it; nothing is typed in by hand. Lower is better on every chart but the file-read one (IOPS).
"""

import argparse
import pathlib
import re
import sys

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CORING = "#c0392b"
OTHERS = "#7f8c8d"


def harness_tables(path):
    """The fixed-width tables of a peer-harness output: a header line, a line of dash groups, rows until a blank or
    unaligned line. Each table is a list of dicts keyed by the header's column names (sliced at the dash groups)."""
    lines = path.read_text().splitlines()
    tables = []
    for i in range(1, len(lines) - 1):
        rule = lines[i]
        if not re.fullmatch(r"-+( +-+)+", rule):
            continue
        spans = [m.span() for m in re.finditer(r"-+", rule)]
        header = lines[i - 1]

        def cells(line):
            out = []
            for k, (a, b) in enumerate(spans):
                end = spans[k + 1][0] if k + 1 < len(spans) else len(line)
                start = a if k == 0 else spans[k - 1][1]
                out.append(line[start:end].strip())
            return out

        names = cells(header)
        rows = []
        for line in lines[i + 1 :]:
            if not line.strip() or line.startswith("-") or len(line) < spans[-1][0]:
                break
            rows.append(dict(zip(names, cells(line))))
        if rows:
            tables.append(rows)
    return tables


def number(text):
    return float(text.replace(",", "").rstrip("*").strip())


def server_name(text):
    return text.rstrip(" *").strip()


def bars(ax, labels, values, title, unit, higher_is_better=False):
    colors = [CORING if label.startswith("coring") else OTHERS for label in labels]
    ax.barh(labels, values, color=colors)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(unit + ("  (higher is better)" if higher_is_better else "  (lower is better)"), fontsize=8)
    ax.tick_params(labelsize=8)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,.2f}" if v < 10 else f" {v:,.0f}", va="center", fontsize=7)
    ax.margins(x=0.18)


def echo_chart(out):
    rows = harness_tables(RESULTS / "echo-peers.txt")[0]
    configs = [("64", "64"), ("512", "64"), ("64", "4096"), ("512", "4096")]
    fig, axes = plt.subplots(1, len(configs), figsize=(17, 4.2))
    for ax, (conns, size) in zip(axes, configs):
        sel = [r for r in rows if r["conns"] == conns and r["bytes"] == size]
        sel.sort(key=lambda r: number(r["srv us/rt"]))
        bars(ax, [server_name(r["server"]) for r in sel], [number(r["srv us/rt"]) for r in sel],
             f"{conns} connections x {size} B", "server CPU per round trip, us")
    fig.suptitle("TCP echo: server CPU per round trip (benchmarks/results/echo-peers.txt)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def http_chart(out):
    rows = [r for r in harness_tables(RESULTS / "http-peers.txt")[0] if server_name(r["server"]) != "coring-before"]
    rows.sort(key=lambda r: number(r["srv us/req"]))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bars(ax, [server_name(r["server"]) for r in rows], [number(r["srv us/req"]) for r in rows],
         "HTTP/1.1 keep-alive hello world, 64 connections (benchmarks/results/http-peers.txt)",
         "server CPU per request, us")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def sleepers_tables():
    path = RESULTS / "sleepers-peers.txt"
    rows = harness_tables(path)[0]
    rss = {}
    for line in path.read_text().splitlines():
        if line.startswith("marginal peak RSS per sleeping task"):
            for part in line.split(":", 1)[1].split(";"):
                name, _, value = part.rpartition(":")
                rss[server_name(name)] = number(value.replace("B", ""))
    return rows, rss


def sleepers_chart(out):
    rows, rss = sleepers_tables()
    big = [r for r in rows if r["mode"] == "sleep" and number(r["N"]) == 1_000_000]
    big.sort(key=lambda r: number(r["wall s"]))
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 3.6))
    bars(a, [server_name(r["runtime"]) for r in big], [number(r["wall s"]) for r in big],
         "1,000,000 tasks each sleeping 1 s: wall time", "seconds (1.00 is the sleep itself)")
    names = sorted(rss, key=rss.get)
    bars(b, names, [rss[n] for n in names], "memory per sleeping task (peak RSS, 100k -> 1M)", "bytes")
    fig.suptitle("Sleepers (benchmarks/results/sleepers-peers.txt)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def spawn_chart(out):
    rows, _ = sleepers_tables()
    sel = [r for r in rows if r["mode"] == "spawn"]
    sel.sort(key=lambda r: number(r["ns/task"]))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bars(ax, [server_name(r["runtime"]) for r in sel], [number(r["ns/task"]) for r in sel],
         "create and await 1,000,000 trivial tasks, one after another (sleepers-peers.txt)", "ns per task, log scale")
    ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def files_chart(out):
    rows = []
    for line in (RESULTS / "file-fio.txt").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] in ("read", "randread"):
            rows.append(cells)
    labels = [f"{p} {bs} depth {d}" for p, bs, d, *_ in rows]
    series = [("fio psync", 6, OTHERS), ("fio io_uring", 3, "#34495e"), ("coring", 4, CORING)]
    fig, ax = plt.subplots(figsize=(9, 4))
    height = 0.27
    for k, (name, col, color) in enumerate(series):
        ys = [y + (k - 1) * height for y in range(len(rows))]
        ax.barh(ys, [number(r[col]) for r in rows], height=height, label=name, color=color)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("IOPS, log scale  (higher is better)", fontsize=8)
    ax.legend(fontsize=8)
    ax.set_title("File reads in the page cache beside fio (benchmarks/results/file-fio.txt)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


CHARTS = {
    "echo-cpu.png": echo_chart,
    "http-cpu.png": http_chart,
    "sleepers.png": sleepers_chart,
    "spawn.png": spawn_chart,
    "files-fio.png": files_chart,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "charts", help="where the PNGs go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in CHARTS.items():
        draw(args.out / name)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
