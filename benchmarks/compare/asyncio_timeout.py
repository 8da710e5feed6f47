#!/usr/bin/python3
"""What a deadline that does not fire costs in CPython's asyncio, for comparison with benchmarks/bm_timeout.cpp.

asyncio has no IORING_OP_NOP; the nearest thing to "one round trip through the loop" is `await asyncio.sleep(0)`.
Measured: that alone, inside `asyncio.wait_for(..., 1)` and inside `async with asyncio.timeout(1)` (3.11+), one task
awaiting in a row and 128 tasks side by side, like the C++ benchmark. Prints ns per operation and the overhead.
usage: asyncio_timeout.py [N]   (Debian's /usr/bin/python3; set USE_UVLOOP=1 to run on uvloop)
"""
import asyncio
import os
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000


async def bare(n):
    for _ in range(n):
        await asyncio.sleep(0)


async def with_wait_for(n):
    for _ in range(n):
        await asyncio.wait_for(asyncio.sleep(0), 1)


async def with_timeout(n):
    for _ in range(n):
        async with asyncio.timeout(1):
            await asyncio.sleep(0)


async def side_by_side(body, n, tasks):
    await asyncio.gather(*(body(n // tasks) for _ in range(tasks)))


def measure(body, tasks):
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        asyncio.run(side_by_side(body, N, tasks))
        best = min(best, time.perf_counter() - t0)
    return best * 1e9 / N


def main():
    if os.environ.get("USE_UVLOOP"):
        import uvloop
        uvloop.install()
    print(f"python {sys.version.split()[0]}, N={N}, best of 3")
    print(f"{'tasks':>5}  {'bare ns/op':>10}  {'wait_for ns/op':>14}  {'overhead':>8}  {'timeout() ns/op':>15}  {'overhead':>8}")
    for tasks in (1, 128):
        b = measure(bare, tasks)
        w = measure(with_wait_for, tasks)
        t = measure(with_timeout, tasks)
        print(f"{tasks:>5}  {b:>10.0f}  {w:>14.0f}  {100 * (w / b - 1):>7.0f}%  {t:>15.0f}  {100 * (t / b - 1):>7.0f}%")


if __name__ == "__main__":
    main()
