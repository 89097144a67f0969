"""The whole bridge: real daphne, a fake Deepgram over HTTP, and Twilio played over a socket."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from calls.records.queries import FALLBACK_GREETING
from calls.twilio.protocol import GREETING_MARK
from calls.twilio.simulator import simulate_call
from devtools.devserver import RunningServer
from devtools.fake_deepgram import FakeDeepgram, fake_audio, running_in_thread
from tests.bridge import ADMIN_PASSWORD, ADMIN_USER, running_bridge

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deepgram() -> Iterator[FakeDeepgram]:
    with running_in_thread(chunk_size=400) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    deepgram: FakeDeepgram, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with running_bridge(tmp_path_factory.mktemp("e2e"), deepgram.url) as (running, _):
        yield running


@pytest.fixture(autouse=True)
def fresh_deepgram(deepgram: FakeDeepgram) -> None:
    deepgram.reset()


async def test_a_call_hears_exactly_what_deepgram_streamed(
    server: RunningServer, deepgram: FakeDeepgram
) -> None:
    deepgram.hold()
    released: list[bool] = []

    def on_event(name: str, message: dict) -> None:
        # Deepgram is still holding the rest of the body when the first audio reaches the caller.
        if name == "media" and not released:
            released.append(True)
            deepgram.release()

    report = await simulate_call(server.url, realtime_playback=False, on_event=on_event)
    assert report.ok, (report.errors, server.log())
    assert report.say == (FALLBACK_GREETING.say_text,)
    assert report.stream_url == f"ws://127.0.0.1:{server.port}/twilio"
    assert report.audio == fake_audio(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)
    assert report.marks == (GREETING_MARK,)
    assert released == [True]
    assert report.media_messages > 1
    assert [r.model for r in deepgram.requests] == ["aura-asteria-en"]
    assert "Traceback" not in server.log()


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match is not None, "no CSRF token on the page"
    return match[1]


async def test_editing_the_greeting_in_the_admin_changes_the_next_call(
    server: RunningServer, deepgram: FakeDeepgram
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as admin:
        page = await admin.get("/admin/login/")
        token = csrf_token(page.text)
        login = await admin.post(
            "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token, "username": ADMIN_USER, "password": ADMIN_PASSWORD},
        )
        assert login.status_code == 302
        form = await admin.get("/admin/calls/greeting/1/change/")
        assert form.status_code == 200
        token = csrf_token(form.text)
        saved = await admin.post(
            "/admin/calls/greeting/1/change/",
            data={
                "csrfmiddlewaretoken": token,
                "name": "Default",
                "say_text": "",
                "text": "Welcome to the bakery.",
                "voice": "aura-2-thalia-en",
                "is_default": "on",
            },
        )
        assert saved.status_code == 302, saved.text

    report = await simulate_call(server.url, realtime_playback=False)
    assert report.ok, (report.errors, server.log())
    assert report.say == ()
    assert report.audio == fake_audio("aura-2-thalia-en", "Welcome to the bakery.")


async def test_admin_and_voice_are_served(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/admin/login/")).status_code == 200
        voice = await client.post("/voice", data={"CallSid": "CA1"})
        assert voice.status_code == 200
        assert voice.headers["content-type"].startswith("text/xml")
