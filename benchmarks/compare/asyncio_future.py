#!/usr/bin/python3
"""The workloads of benchmarks/bm_future.cpp in CPython's asyncio, in the same units.

    /usr/bin/python3 benchmarks/compare/asyncio_future.py
    /usr/bin/python3 benchmarks/compare/asyncio_future.py --coring bm_future.json

Prints ns per operation, each the median of a few repetitions of wall time (asyncio runs on one thread). With
--coring, reads the JSON that `bm_future --benchmark_out=bm_future.json --benchmark_out_format=json` wrote and prints
the coring / asyncio ratio table. Standard library only.
"""

import argparse
import asyncio
import sys

from asyncio_sync import coring_figures, measure  # the same JSON reading and timing


async def set_then_await(n):
    loop = asyncio.get_running_loop()
    total = 0
    for i in range(n):
        f = loop.create_future()
        f.set_result(i)
        total += await f
    return total


async def round_trip(n):
    loop = asyncio.get_running_loop()
    state = {"to_pong": loop.create_future(), "to_ping": loop.create_future(), "stop": False}

    async def pong():
        while True:
            v = await state["to_pong"]
            if state["stop"]:
                return
            state["to_pong"] = loop.create_future()
            reply, state["to_ping"] = state["to_ping"], loop.create_future()
            reply.set_result(v + 1)

    partner = asyncio.create_task(pong())
    v = 0
    for _ in range(n):
        mine = state["to_ping"]
        state["to_pong"].set_result(v)
        v = await mine
    state["stop"] = True
    state["to_pong"].set_result(0)
    await partner


async def call_soon(n):
    loop = asyncio.get_running_loop()
    ran = 0

    def cb():
        nonlocal ran
        ran += 1

    for _ in range(n // 1000):
        for _ in range(1000):
            loop.call_soon(cb)
        while ran < 1000:
            await asyncio.sleep(0)
        ran = 0


async def call_later_cancel(n):
    loop = asyncio.get_running_loop()
    for _ in range(n):
        loop.call_later(3600, print).cancel()
    await asyncio.sleep(0)


WORKLOADS = [
    ("future set+await (ns)", set_then_await, 200_000, "BM_future_set_then_await"),
    ("future round trip (ns)", round_trip, 100_000, "BM_future_round_trip"),
    ("call_soon (ns/callback)", call_soon, 200_000, "BM_call_soon"),
    ("call_later+cancel (ns)", call_later_cancel, 200_000, "BM_call_later_cancel"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coring", metavar="JSON", help="bm_future's --benchmark_out JSON, for the ratio table")
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    coring = coring_figures(args.coring) if args.coring else {}
    print(f"CPython {sys.version.split()[0]} asyncio, median of {args.repetitions} runs (wall ns per operation)")
    rows = []
    for label, fn, n, bm in WORKLOADS:
        ns = measure(fn, n, args.repetitions)
        rows.append((label, ns, coring.get(bm)))
        print(f"  {label:<26} {ns:10.1f}")
    if coring:
        print("\ncoring vs asyncio (ratio = coring / asyncio; lower is faster)")
        print(f"  {'measure':<26} {'coring':>9} {'asyncio':>9} {'ratio':>8} {'speed-up':>9}")
        for label, ns, c in rows:
            if c is not None:
                print(f"  {label:<26} {c:9.1f} {ns:9.1f} {c / ns:8.4f} {ns / c:8.0f}x")


if __name__ == "__main__":
    main()
