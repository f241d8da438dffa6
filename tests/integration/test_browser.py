"""The browser page (examples/index.html served at / by handlers/broadcast.lua)
in headless Chromium, driven over the DevTools protocol."""
import asyncio
import json
import os

import pytest

from conftest import REPO, scaled
from pushlib import HANDLERS, http, log_errors

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = "/tmp/wspush-page.png"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="%s is absent (install Debian 'chromium': tests/deps.sh --test)"
                                % CHROMIUM)

LOG_TEXT = "Array.from(document.querySelectorAll('#log > div')).map(d => d.textContent)"


def log_has(text):
    return "%s.some(t => t.endsWith(%s))" % (LOG_TEXT, json.dumps("  " + text))


@pytest.fixture
def broadcast(spawn):
    return spawn(HANDLERS / "broadcast.lua")


def test_page_connects_echoes_and_shows_pushes(broadcast):
    from browser.cdp import Chromium

    url = "http://127.0.0.1:%d/" % broadcast.port
    mark = broadcast.log_mark()

    async def go():
        loop = asyncio.get_running_loop()
        browser = await loop.run_in_executor(None, Chromium.launch, scaled(30))
        async with browser:
            page = await browser.new_page()
            await page.navigate(url)
            await page.wait_for("document.readyState === 'complete'", scaled(15))
            assert await page.eval("document.title") == "wspush"

            # The page connects by itself; click Connect if it offers one.
            if await page.eval("document.getElementById('toggle').textContent.trim()") == "Connect":
                await page.click("#toggle")
            await page.wait_for(log_has("Welcome"), scaled(10), desc="Welcome in the log")
            status = await page.eval("[document.getElementById('status').textContent,"
                                     " document.getElementById('status').className]")
            assert status[1] == "open" and status[0] in ("open", "connected"), status
            # the page derived ws://<its own host>/ws
            assert await page.eval(log_has("connected to ws://127.0.0.1:%d/ws" % broadcast.port))

            # Type into the send box and submit with Enter.
            await page.type_text("#text", "hello from chromium")
            await page.press_enter()
            await page.wait_for(log_has("new message :hello from chromium"), scaled(10),
                                desc="the echo in the log")
            assert await page.eval("document.getElementById('text').value") == ""
            # and with the Send button
            await page.type_text("#text", "second one")
            await page.click("#form button")
            await page.wait_for(log_has("new message :second one"), scaled(10))

            # A server push through /receive.
            r = await loop.run_in_executor(None, http, broadcast, "GET",
                                           "/receive?msg=pushed+to+the+page")
            assert r.status == 200 and json.loads(r.body) == {"sent": 1}, r
            await page.wait_for(log_has("pushed to the page"), scaled(10), desc="the push in the log")

            # The heartbeat ("ping", echoed by the server) stays out of the log,
            # but a "ping" the user types is shown with its echo.
            await page.eval("heartbeat(); true")
            await page.type_text("#text", "after heartbeat")
            await page.press_enter()
            await page.wait_for(log_has("new message :after heartbeat"), scaled(10))
            assert not await page.eval(log_has("new message :ping")), await page.eval(LOG_TEXT)
            await page.type_text("#text", "ping")
            await page.press_enter()
            await page.wait_for(log_has("new message :ping"), scaled(10), desc="the echo of a typed ping")

            await page.screenshot(SCREENSHOT)

            # Disconnect / Connect with the toggle button.
            await page.click("#toggle")
            await page.wait_for("document.getElementById('status').className === 'closed'", scaled(10))
            assert await page.eval("document.getElementById('toggle').textContent") == "Connect"
            r = await loop.run_in_executor(None, http, broadcast, "GET", "/receive?msg=nobody")
            assert json.loads(r.body) == {"sent": 0}, r
            await page.click("#toggle")
            await page.wait_for("document.getElementById('status').className === 'open'", scaled(10))
            await page.wait_for("%s.filter(t => t.endsWith('  Welcome')).length === 2" % LOG_TEXT,
                                scaled(10), desc="a second Welcome after reconnecting")

            # A connection that goes away unasked is re-opened by the page
            # (backoff with jitter: the first retry waits at most 0.5 s).
            await page.eval("ws.close(1000, 'dropped'); true")
            await page.wait_for(LOG_TEXT + ".some(t => t.includes('reconnecting in'))", scaled(10))
            await page.wait_for("%s.filter(t => t.endsWith('  Welcome')).length === 3" % LOG_TEXT,
                                scaled(15), desc="reconnected by itself")
            assert await page.eval("document.getElementById('status').className") == "open"

            # No alert boxes, no uncaught errors.
            assert page.exceptions == [], page.exceptions
            errors = [c for c in page.console if c[0] in ("error", "assert")]
            assert errors == [], errors
    asyncio.run(asyncio.wait_for(go(), scaled(60)))
    assert os.path.getsize(SCREENSHOT) > 1000
    assert not log_errors(broadcast, mark)


def test_the_heartbeat_stays_hidden_after_the_tours_edit(spawn, tmp_path):
    """The README's tour invites changing "new message :" in the handler: the
    page must still recognise the echo of its own heartbeat."""
    from browser.cdp import Chromium

    (tmp_path / "examples").symlink_to(REPO / "examples")  # the script serves ../examples
    (tmp_path / "handlers").mkdir()
    original = (HANDLERS / "broadcast.lua").read_text()
    edited = original.replace('"new message :"', '"got: "')
    assert edited != original
    (tmp_path / "handlers" / "broadcast.lua").write_text(edited)
    s = spawn(tmp_path / "handlers" / "broadcast.lua")

    async def go():
        loop = asyncio.get_running_loop()
        browser = await loop.run_in_executor(None, Chromium.launch, scaled(30))
        async with browser:
            page = await browser.new_page()
            await page.navigate("http://127.0.0.1:%d/" % s.port)
            await page.wait_for(log_has("Welcome"), scaled(15), desc="Welcome in the log")
            await page.eval("heartbeat(); true")
            await page.type_text("#text", "after heartbeat")
            await page.press_enter()
            await page.wait_for(log_has("got: after heartbeat"), scaled(10))
            assert not await page.eval(log_has("got: ping")), await page.eval(LOG_TEXT)
            await page.type_text("#text", "ping")
            await page.press_enter()
            await page.wait_for(log_has("got: ping"), scaled(10), desc="the echo of a typed ping")
    asyncio.run(asyncio.wait_for(go(), scaled(60)))
