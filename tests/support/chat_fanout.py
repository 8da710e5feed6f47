#!/usr/bin/env python3
"""The chat example's broadcast under a reader that stops reading (examples/http/chat.cpp).

    chat_fanout.py CHAT_BINARY

Two clients (Python's websockets library) join the room; one stops reading (its library queue holds one message, so
TCP pushes back), the other sends 300 messages of 64 KiB, each once the previous one came back. The sender must get every one of them back, in order,
while the stalled member is evicted with close code 1008 once its outbox overflows: one slow member never holds the
others back. Exit status 0 when that is so, 1 otherwise, 77 (a skip) without python3-websockets.
"""
import asyncio
import re
import subprocess
import sys

try:
    import websockets  # Debian's python3-websockets
except ImportError:
    print("python3-websockets is not installed: skipped")
    sys.exit(77)

COUNT = 300


async def run(binary):
    chat = subprocess.Popen([binary, "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        addr = re.search(r"http://(\S+)", chat.stdout.readline()).group(1)
        url = f"ws://{addr}/ws"
        async with websockets.connect(url, max_size=None) as fast, \
                websockets.connect(url, max_size=None, max_queue=1, read_limit=2 ** 16) as slow:
            await asyncio.sleep(0.2)  # both have joined

            async def talk():
                # Each message once the last one came back: the sender's own outbox never holds more than one.
                got = []
                for i in range(COUNT):
                    await fast.send(f"{i:06d}" + "m" * 65530)
                    got.append(int((await fast.recv())[:6]))
                return got

            got = await asyncio.wait_for(talk(), 60)
            if got != list(range(COUNT)):
                print(f"the sender got {len(got)} messages, not 0..{COUNT - 1} in order")
                return 1
            slow_count = 0
            code = None
            try:
                while True:
                    await asyncio.wait_for(slow.recv(), 10)
                    slow_count += 1
            except websockets.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
            print(f"sender: all {COUNT} back in order; stalled reader: {slow_count} messages, then close {code}")
            if code != 1008 or slow_count >= COUNT:
                print("the stalled reader was not evicted with 1008")
                return 1
        return 0
    finally:
        chat.terminate()
        try:
            chat.wait(5)
        except subprocess.TimeoutExpired:
            chat.kill()


if __name__ == "__main__":
    sys.exit(asyncio.run(run(sys.argv[1])))
