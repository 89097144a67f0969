"""The greeting page in a real browser: headless Chromium logs in, presses Listen, hears it all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from calls.records.queries import FALLBACK_GREETING
from devtools.devserver import RunningServer
from devtools.fake_deepgram import FakeDeepgram, fake_audio, running_in_thread
from tests.bridge import ADMIN_PASSWORD, ADMIN_USER, running_bridge

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
]

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Chromium at {CHROMIUM} (Debian: apt-get install chromium; "
        "CI installs it)",
        allow_module_level=True,
    )

playwright_api = pytest.importorskip("playwright.async_api")


@pytest.fixture(scope="module")
def bridge(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, FakeDeepgram]]:
    with (
        running_in_thread(chunk_size=400) as deepgram,
        running_bridge(tmp_path_factory.mktemp("browser"), deepgram.url) as (server, _),
    ):
        yield server, deepgram


@pytest.fixture
async def page(bridge: tuple[RunningServer, FakeDeepgram]) -> AsyncIterator[Page]:
    server, _ = bridge
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{server.url}/admin/login/?next=/admin/")
            await page.fill("#id_username", ADMIN_USER)
            await page.fill("#id_password", ADMIN_PASSWORD)
            await page.click("input[type=submit]")
            await page.wait_for_url(f"{server.url}/admin/")
            yield page
        finally:
            await browser.close()


async def test_listen_plays_the_saved_greeting(
    page: Page,
    bridge: tuple[RunningServer, FakeDeepgram],
) -> None:
    server, deepgram = bridge
    deepgram.reset()
    await page.goto(f"{server.url}/admin/calls/greeting/")
    await page.click("#result_list a:text-is('Default')")
    await page.wait_for_selector("#greeting-audio")
    await page.click("button[data-listen]")
    # Pressing Listen starts playback from the start; the browser has decoded the WAV by then.
    await page.wait_for_function(
        "() => { const a = document.getElementById('greeting-audio');"
        " return a.readyState >= 1 && (a.currentTime > 0 || !a.paused); }"
    )
    state = await page.evaluate(
        "() => { const a = document.getElementById('greeting-audio');"
        " return {duration: a.duration, error: a.error && a.error.code, src: a.currentSrc}; }"
    )
    expected = len(fake_audio(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)) / 8000
    assert state["error"] is None
    assert "/listen.wav?v=" in state["src"]
    assert state["duration"] == pytest.approx(expected, abs=0.01)
    text = await page.inner_text(".listen")
    assert f"25 characters, {expected:.1f} s spoken" in text
    # Loading the page and the audio cost one Deepgram request in all.
    assert len(deepgram.requests) == 1


async def test_a_deepgram_failure_shows_a_message_in_the_browser(
    page: Page,
    bridge: tuple[RunningServer, FakeDeepgram],
) -> None:
    server, deepgram = bridge
    deepgram.reset()
    await page.goto(f"{server.url}/admin/calls/greeting/add/")
    await page.fill("#id_name", "Closed")
    await page.fill("#id_text", "We are closed today.")
    deepgram.fail(401, times=5)
    await page.click("input[name=_continue]")
    message = await page.inner_text(".listen-error")
    assert "Deepgram answered 401" in message
    assert "check DEEPGRAM_API_KEY" in message
    assert await page.query_selector("#greeting-audio") is None
    # Once Deepgram answers again, the page plays the greeting.
    deepgram.reset()
    await page.reload()
    await page.wait_for_function("() => document.getElementById('greeting-audio')?.readyState >= 1")
