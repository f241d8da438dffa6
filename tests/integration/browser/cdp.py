"""A minimal Chrome DevTools Protocol driver for headless Chromium, over the
python `websockets` package (no npm). Every wait is bounded.

    async with Chromium.launch() as browser:
        page = await browser.new_page()
        await page.navigate("http://127.0.0.1:PORT/")
        await page.wait_for("document.readyState === 'complete'")
"""
import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import websockets

CHROMIUM = os.environ.get("WSPUSH_CHROMIUM", "/usr/bin/chromium")
DEVTOOLS_RE = re.compile(r"DevTools listening on (ws://\S+)")

FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--no-default-browser-check", "--mute-audio",
    "--window-size=1000,800", "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


class CDPError(AssertionError):
    pass


class Chromium:
    def __init__(self, proc, profile, ws_url):
        self.proc, self.profile, self.ws_url = proc, profile, ws_url
        self._lines = []
        self.ws = None
        self._ids = itertools.count(1)
        self._pending = {}
        self._listeners = []
        self._reader = None

    # -- process -----------------------------------------------------------
    @classmethod
    def launch(cls, timeout=30.0, flags=()):
        """flags: more command-line switches (e.g. a certificate to trust)."""
        profile = tempfile.mkdtemp(prefix="wspush-chromium-")
        cmd = [CHROMIUM, *FLAGS, *flags, "--user-data-dir=" + profile, "about:blank"]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        lines, found, cond = [], [], threading.Condition()

        def drain():
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace")
                with cond:
                    lines.append(line)
                    m = DEVTOOLS_RE.search(line)
                    if m and not found:
                        found.append(m.group(1))
                    cond.notify_all()
            with cond:
                found.append(None)
                cond.notify_all()

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        with cond:
            while not found and time.monotonic() < deadline:
                cond.wait(max(0.01, deadline - time.monotonic()))
        url = found[0] if found else None
        if not url:
            proc.kill()
            proc.wait(timeout=10)
            shutil.rmtree(profile, ignore_errors=True)
            raise CDPError("chromium did not print its DevTools URL within %ss:\n%s"
                           % (timeout, "".join(lines)[-3000:]))
        self = cls(proc, profile, url)
        self._lines = lines
        return self

    @property
    def stderr(self):
        return "".join(self._lines)

    async def __aenter__(self):
        self.ws = await websockets.connect(self.ws_url, max_size=None, compression=None,
                                           open_timeout=10, close_timeout=2, ping_interval=None)
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc):
        try:
            await asyncio.wait_for(self.send("Browser.close"), 5)
        except Exception:
            pass
        if self._reader:
            self._reader.cancel()
        try:
            await self.ws.close()
        except Exception:
            pass
        self.close()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- protocol ----------------------------------------------------------
    async def _read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    fut = self._pending.pop(msg["id"], None)
                    if fut and not fut.done():
                        fut.set_result(msg)
                else:
                    for fn in list(self._listeners):
                        fn(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(CDPError("DevTools connection closed"))

    async def send(self, method, params=None, session=None, timeout=15.0):
        i = next(self._ids)
        msg = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self._pending[i] = fut
        await self.ws.send(json.dumps(msg))
        res = await asyncio.wait_for(fut, timeout)
        if "error" in res:
            raise CDPError("%s failed: %r" % (method, res["error"]))
        return res.get("result", {})

    async def new_page(self):
        t = await self.send("Target.createTarget", {"url": "about:blank"})
        a = await self.send("Target.attachToTarget", {"targetId": t["targetId"], "flatten": True})
        page = Page(self, a["sessionId"])
        self._listeners.append(page._event)
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        return page


class Page:
    def __init__(self, browser, session):
        self.browser, self.session = browser, session
        self.exceptions = []   # uncaught JS exceptions
        self.console = []      # (type, text)

    def _event(self, msg):
        if msg.get("sessionId") != self.session:
            return
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.exceptions.append(d.get("exception", {}).get("description") or d.get("text"))
        elif m == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.console.append((p.get("type"), text))

    async def send(self, method, params=None, timeout=15.0):
        return await self.browser.send(method, params, session=self.session, timeout=timeout)

    async def navigate(self, url):
        r = await self.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise CDPError("navigate to %s: %s" % (url, r["errorText"]))
        return r

    async def eval(self, expression):
        r = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                 "awaitPromise": True})
        if "exceptionDetails" in r:
            raise CDPError("JS error in %r: %r" % (expression, r["exceptionDetails"]))
        return r.get("result", {}).get("value")

    async def wait_for(self, expression, timeout=10.0, interval=0.05, desc=None):
        """Poll a JS expression until truthy (bounded); return its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = None
        for _ in range(100000):
            last = await self.eval(expression)
            if last:
                return last
            if loop.time() > deadline:
                break
            await asyncio.sleep(interval)  # polling interval, not synchronisation
        raise CDPError("timed out after %ss waiting for %s (last value %r)"
                       % (timeout, desc or expression, last))

    async def click(self, selector):
        ok = await self.eval("(() => { const e = document.querySelector(%s); if (!e) return false;"
                             " e.click(); return true; })()" % json.dumps(selector))
        if not ok:
            raise CDPError("no element %s to click" % selector)

    async def type_text(self, selector, text):
        """Focus an input and type into it as a user would (Input.insertText)."""
        ok = await self.eval("(() => { const e = document.querySelector(%s); if (!e) return false;"
                             " e.focus(); return document.activeElement === e; })()" % json.dumps(selector))
        if not ok:
            raise CDPError("cannot focus %s" % selector)
        await self.send("Input.insertText", {"text": text})

    async def press_enter(self):
        for t in ("keyDown", "keyUp"):
            await self.send("Input.dispatchKeyEvent", {
                "type": t, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                **({"text": "\r"} if t == "keyDown" else {})})

    async def screenshot(self, path):
        r = await self.send("Page.captureScreenshot", {"format": "png"}, timeout=30)
        data = base64.b64decode(r["data"])
        with open(path, "wb") as f:
            f.write(data)
        return len(data)
