#!/usr/bin/python3
"""What asyncio.to_thread costs in CPython, for comparison with benchmarks/bm_to_thread.cpp.

Measured, like the C++ benchmark, with an empty function:
  sequential      one task awaiting `asyncio.to_thread(empty)` in a row: us per round trip
  64 callers      64 tasks, each awaiting `asyncio.to_thread(empty)` in a row: us per job (throughput)
  pool baseline   a plain thread submitting to a concurrent.futures.ThreadPoolExecutor and blocking on
                  `future.result()` in a row: the same pool without the event loop
The loop's default executor has min(32, cpus + 4) threads, as coring's pool. Wall time; the median of 5 runs.
usage: asyncio_to_thread.py [N]   (Debian's /usr/bin/python3; set USE_UVLOOP=1 to run on uvloop)
"""
import asyncio
import concurrent.futures
import os
import statistics
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
CALLERS = 64
REPETITIONS = 5


def empty():
    pass


async def sequential(n):
    for _ in range(n):
        await asyncio.to_thread(empty)


async def caller(n):
    for _ in range(n):
        await asyncio.to_thread(empty)


async def concurrent64(n):
    await asyncio.gather(*(caller(n // CALLERS) for _ in range(CALLERS)))


def run_loop(coro_fn, n):
    """us per job of coro_fn(n) on a fresh event loop, after an untimed warm-up that starts the pool's threads."""

    async def main():
        await coro_fn(CALLERS * 4)
        start = time.perf_counter()
        await coro_fn(n)
        return time.perf_counter() - start

    return asyncio.run(main()) / n * 1e6


def pool_sequential(n):
    with concurrent.futures.ThreadPoolExecutor(min(32, (os.cpu_count() or 1) + 4)) as pool:
        for _ in range(CALLERS):
            pool.submit(empty).result()
        start = time.perf_counter()
        for _ in range(n):
            pool.submit(empty).result()
        return (time.perf_counter() - start) / n * 1e6


def median_of(fn, *args):
    return statistics.median(fn(*args) for _ in range(REPETITIONS))


def main():
    if os.environ.get("USE_UVLOOP"):
        import uvloop

        uvloop.install()
    print(f"CPython {sys.version.split()[0]}, {asyncio.get_event_loop_policy().__class__.__name__}, N={N}, "
          f"{min(32, (os.cpu_count() or 1) + 4)} pool threads")
    rows = [
        ("asyncio.to_thread, sequential", median_of(run_loop, sequential, N)),
        ("asyncio.to_thread, 64 callers", median_of(run_loop, concurrent64, N)),
        ("ThreadPoolExecutor submit+result", median_of(pool_sequential, N)),
    ]
    print(f"{'measure':34} {'us/op':>9}")
    for name, us in rows:
        print(f"{name:34} {us:9.2f}")


if __name__ == "__main__":
    main()
