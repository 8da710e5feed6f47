#!/usr/bin/env python3
"""The chat example (examples/http/chat.cpp) in a real browser.

    chat_browser.py CHAT_BINARY SCREENSHOT.png

Starts the chat server on a free port and a headless Chromium (Debian's `chromium`, no download), driven over the
Chrome DevTools Protocol with Python's websockets library: two pages open the chat, each sends a message through the
page's own form, and both pages must then show both messages. A screenshot of the first page is written to
SCREENSHOT.png. Exit status 0 when it worked, 1 when it did not, 77 (a skip for ctest) when Chromium is not installed
or cannot start here, saying why.
"""
import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77


class Devtools:
    """One DevTools connection: commands by id, flat sessions for pages."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method, params=None, session=None, timeout=15):
        msg_id = next(self.ids)
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {method}")
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def evaluate(self, session, expression):
        r = await self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        return r.get("result", {}).get("value")

    async def wait_for(self, session, expression, what, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.evaluate(session, expression):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"timed out waiting for {what}")


def start_browser(browser, profile):
    """Starts headless Chromium; returns (process, DevTools URL) or (process, None) with its output."""
    args = [browser, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"DevTools listening on (ws://\S+)", line)
        if m:
            return proc, m.group(1)
    return proc, None, "".join(seen[-20:])


async def run(chat_binary, screenshot):
    import websockets  # Debian's python3-websockets

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("chromium is not installed (Debian: chromium): skipped")
        return SKIP
    chat = subprocess.Popen([chat_binary, "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    profile = tempfile.mkdtemp(prefix="coring-chromium-")
    proc = None
    try:
        first = chat.stdout.readline()
        m = re.search(r"http://(\S+)", first)
        if not m:
            print(f"the chat example printed no address: {first!r}")
            return 1
        url = f"http://{m.group(1)}/"
        started = start_browser(browser, profile)
        proc = started[0]
        if started[1] is None:
            print("chromium did not start here (skipped):\n" + (started[2] if len(started) > 2 else ""))
            return SKIP
        async with websockets.connect(started[1], max_size=None) as ws:
            dt = Devtools(ws)
            sessions = []
            for _ in range(2):
                target = await dt.call("Target.createTarget", {"url": url})
                attached = await dt.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
                sessions.append(attached["sessionId"])
            for s in sessions:
                await dt.call("Runtime.enable", session=s)
                await dt.wait_for(s, "document.getElementById('status') && "
                                     "document.getElementById('status').textContent === 'connected'",
                                  "a page to connect")
            said = ["hello from page one", "hi from page two, h\u00e9h\u00e9"]
            for s, text in zip(sessions, said):
                await dt.evaluate(s, f"document.getElementById('text').value = {json.dumps(text)}; "
                                     "document.getElementById('form').requestSubmit(); true")
            shows = ("Array.from(document.querySelectorAll('#log p')).map(p => p.textContent)")
            for i, s in enumerate(sessions):
                try:
                    check = f"(() => {{ const t = {shows}; return {json.dumps(said)}.every(x => t.includes(x)); }})()"
                    await dt.wait_for(s, check, f"page {i + 1} to show both messages")
                except TimeoutError:
                    print(f"page {i + 1} shows only: {await dt.evaluate(s, shows)}; status: "
                          f"{await dt.evaluate(s, 'document.getElementById(' + json.dumps('status') + ').textContent')}")
                    raise
            logs = [await dt.evaluate(s, shows) for s in sessions]
            shot = await dt.call("Page.captureScreenshot", {"format": "png"}, sessions[0])
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            for i, log in enumerate(logs):
                print(f"page {i + 1} shows: {log}")
            print(f"screenshot: {screenshot}")
        return 0
    except Exception as e:  # a failure of the test, said plainly
        print(f"chat in a browser failed: {type(e).__name__}: {e}")
        return 1
    finally:
        if proc:
            proc.kill()
            proc.wait()
        chat.terminate()
        try:
            chat.wait(5)
        except subprocess.TimeoutExpired:
            chat.kill()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    return asyncio.run(run(sys.argv[1], sys.argv[2]))


if __name__ == "__main__":
    sys.exit(main())
