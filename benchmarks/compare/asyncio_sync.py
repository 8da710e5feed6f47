#!/usr/bin/python3
"""The workloads of benchmarks/bm_sync.cpp in CPython's asyncio, in the same units.

    /usr/bin/python3 benchmarks/compare/asyncio_sync.py
    /usr/bin/python3 benchmarks/compare/asyncio_sync.py --coring bm_sync.json

Prints ns per operation (and items/s for the producer/consumer pair), each the median of a few repetitions of
wall time (asyncio runs on one thread, so wall time is its CPU time). With --coring, reads the JSON that
`bm_sync --benchmark_out=bm_sync.json --benchmark_out_format=json` wrote and prints the coring / asyncio ratio table.

Standard library only.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time

CAPACITY = 64  # the bounded queue of the producer/consumer pair, as in bm_sync.cpp


async def lock_unlock(n):
    lock = asyncio.Lock()
    for _ in range(n):
        async with lock:
            pass


async def semaphore_acquire_release(n):
    sem = asyncio.Semaphore(1)
    for _ in range(n):
        await sem.acquire()
        sem.release()


async def queue_put_get(n):
    q = asyncio.Queue()
    total = 0
    for i in range(n):
        await q.put(i)
        total += await q.get()
    return total


async def queue_nowait(n):
    q = asyncio.Queue()
    total = 0
    for i in range(n):
        q.put_nowait(i)
        total += q.get_nowait()
    return total


async def producer_consumer(n):
    q = asyncio.Queue(CAPACITY)

    async def producer():
        for i in range(n):
            await q.put(i)

    async def consumer():
        total = 0
        for _ in range(n):
            total += await q.get()
        return total

    await asyncio.gather(producer(), consumer())


async def event_round_trip(n):
    a, b = asyncio.Event(), asyncio.Event()
    stop = False

    async def ping():
        nonlocal stop
        for _ in range(n):
            b.set()
            await a.wait()
            a.clear()
        stop = True
        b.set()

    async def pong():
        while True:
            await b.wait()
            b.clear()
            if stop:
                return
            a.set()

    await asyncio.gather(ping(), pong())


async def yield_round_trip(n):
    stop = False

    async def driver():
        nonlocal stop
        for _ in range(n):
            await asyncio.sleep(0)
        stop = True

    async def partner():
        while not stop:
            await asyncio.sleep(0)

    await asyncio.gather(driver(), partner())


# name in the table, asyncio function, operations per run, the bm_sync benchmark measuring the same thing
WORKLOADS = [
    ("mutex lock+unlock (ns)", lock_unlock, 200_000, "BM_mutex_lock_unlock"),
    ("semaphore acq+rel (ns)", semaphore_acquire_release, 200_000, "BM_semaphore_acquire_release"),
    ("queue push+pop (ns)", queue_put_get, 200_000, "BM_queue_push_pop"),
    ("queue try_push+try_pop (ns)", queue_nowait, 200_000, "BM_queue_try_push_pop"),
    ("producer/consumer (ns/item)", producer_consumer, 200_000, "BM_queue_producer_consumer/real_time"),
    ("event round trip (ns)", event_round_trip, 100_000, "BM_event_round_trip"),
    ("yield round trip (ns)", yield_round_trip, 100_000, "BM_baseline_yield_round_trip"),
]


def measure(fn, n, repetitions):
    """Median ns per operation over `repetitions` runs, each in a fresh event loop."""
    samples = []
    for _ in range(repetitions):
        loop = asyncio.new_event_loop()
        try:
            start = time.perf_counter_ns()
            loop.run_until_complete(fn(n))
            samples.append((time.perf_counter_ns() - start) / n)
        finally:
            loop.close()
    return statistics.median(samples)


def coring_figures(path):
    """bm_sync's median "per_op" per benchmark (in ns) from Google Benchmark's JSON output."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    out, single = {}, {}
    for b in data.get("benchmarks", []):
        if "per_op" not in b:
            continue
        name = b.get("run_name", b["name"])
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                out[name] = b["per_op"] * 1e9
        else:
            single.setdefault(name, []).append(b["per_op"] * 1e9)
    for name, values in single.items():  # run without repetitions: no aggregates
        out.setdefault(name, statistics.median(values))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coring", metavar="JSON", help="bm_sync's --benchmark_out JSON, for the ratio table")
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()

    coring = coring_figures(args.coring) if args.coring else {}
    print(f"CPython {sys.version.split()[0]} asyncio, median of {args.repetitions} runs (wall ns per operation)")
    rows = []
    for label, fn, n, bm in WORKLOADS:
        ns = measure(fn, n, args.repetitions)
        rows.append((label, ns, coring.get(bm)))
        rate = f"   {1e3 / ns:.2f} M items/s" if "/item" in label else ""
        print(f"  {label:<29} {ns:10.1f}{rate}")

    if coring:
        print("\ncoring vs asyncio (ratio = coring / asyncio; lower is faster)")
        print(f"  {'measure':<29} {'coring':>9} {'asyncio':>9} {'ratio':>8} {'speed-up':>9}")
        for label, ns, c in rows:
            if c is None:
                continue
            print(f"  {label:<29} {c:9.1f} {ns:9.1f} {c / ns:8.4f} {ns / c:8.0f}x")
            if "/item" in label:
                print(f"  {'  as items/s':<29} {1e3 / c:7.1f} M {1e3 / ns:7.2f} M")


if __name__ == "__main__":
    main()
