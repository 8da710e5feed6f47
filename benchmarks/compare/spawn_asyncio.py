"""asyncio's create_subprocess_exec + wait: N runs of /bin/true one after the other, then N with up to C at once.
The peer of benchmarks/peers/spawn_coring.cpp (same arguments, same output).

    python3 benchmarks/compare/spawn_asyncio.py [N=1000] [C=32]
"""
import asyncio
import sys
import time


async def one_by_one(n):
    for _ in range(n):
        p = await asyncio.create_subprocess_exec("/bin/true")
        assert await p.wait() == 0


async def at_once(n, c):
    sem = asyncio.Semaphore(c)

    async def one():
        async with sem:
            p = await asyncio.create_subprocess_exec("/bin/true")
            return await p.wait()

    codes = await asyncio.gather(*(one() for _ in range(n)))
    assert all(code == 0 for code in codes)


def best_us(n, make):
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        asyncio.run(make())
        best = min(best, (time.perf_counter() - t0) * 1e6 / n)
    return best


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    c = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    seq = best_us(n, lambda: one_by_one(n))
    par = best_us(n, lambda: at_once(n, c))
    print(f"asyncio spawn+wait one by one: {seq:.1f} us/child")
    print(f"asyncio spawn+wait {c} at once:  {par:.1f} us/child")


if __name__ == "__main__":
    main()
