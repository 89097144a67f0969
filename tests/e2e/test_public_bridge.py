"""A public-facing bridge through real daphne: signatures behind a proxy, fallback, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from calls.records.queries import FALLBACK_GREETING
from calls.twilio.simulator import simulate_call, twilio_signature
from devtools.devserver import RunningServer, migrate, running_daphne
from devtools.fake_deepgram import FakeDeepgram, fake_audio, running_in_thread
from tests.bridge import bridge_env

pytestmark = pytest.mark.e2e

TOKEN = "e2e-twilio-auth-token"
PUBLIC = "https://public.example"
GREETING = FALLBACK_GREETING.text


@pytest.fixture(scope="module")
def deepgram() -> Iterator[FakeDeepgram]:
    with running_in_thread(chunk_size=400) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_deepgram(deepgram: FakeDeepgram) -> None:
    deepgram.reset()


def production_env(deepgram: FakeDeepgram, db: Path) -> dict[str, str]:
    """DEBUG off, a Twilio token, and a public https address the server never sees itself."""
    return bridge_env(
        db.parent,
        deepgram.url,
        {
            "DEBUG": "false",
            "DEEPGRAM_RETRY_DEADLINE": "1",
            "TWILIO_AUTH_TOKEN": TOKEN,
            "PUBLIC_URL": PUBLIC,
        },
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-security") / "db.sqlite3"


@pytest.fixture(scope="module")
def server(deepgram: FakeDeepgram, db: Path) -> Iterator[RunningServer]:
    env = production_env(deepgram, db)
    migrate(env)
    with running_daphne(env, db.parent / "daphne.log") as running:
        yield running


def call_row(db: Path, call_sid: str) -> tuple[str, str | None, str]:
    """The call's (status, ended_at, error), once the server has finished writing it."""
    for _ in range(200):
        with sqlite3.connect(db) as connection:
            row = connection.execute(
                "SELECT status, ended_at, error FROM calls_call WHERE call_sid = ?", (call_sid,)
            ).fetchone()
        if row is not None and row[0] != "in-progress":
            return row
        time.sleep(0.05)
    return row


async def test_signed_call_through_a_tls_proxy_is_answered(
    server: RunningServer, deepgram: FakeDeepgram, db: Path
) -> None:
    # Twilio signs https://public.example/voice and wss://public.example/twilio; daphne sees
    # http://127.0.0.1:PORT, as behind a TLS proxy.
    report = await simulate_call(
        server.url, auth_token=TOKEN, public_url=PUBLIC, realtime_playback=False
    )
    assert report.ok, (report.errors, server.log())
    assert report.stream_url == "wss://public.example/twilio"
    assert "token" in report.parameters
    assert report.audio == fake_audio("aura-asteria-en", GREETING)
    assert len(deepgram.requests) == 1
    assert call_row(db, report.call_sid)[0] == "completed"
    assert TOKEN not in server.log() and "e2e-key" not in server.log()


@pytest.mark.parametrize(
    ("auth_token", "public_url"),
    [("", PUBLIC), ("not-the-token", PUBLIC), (TOKEN, "")],
    ids=["unsigned", "wrong-token", "signed-for-the-server-url"],
)
async def test_unsigned_webhook_is_refused(
    server: RunningServer, deepgram: FakeDeepgram, auth_token: str, public_url: str
) -> None:
    report = await simulate_call(server.url, auth_token=auth_token, public_url=public_url)
    assert report.twiml_status == 403
    assert deepgram.requests == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Twilio-Signature": twilio_signature(TOKEN, "ws://127.0.0.1/twilio")}],
    ids=["unsigned", "signed-for-the-server-url"],
)
async def test_unsigned_handshake_is_refused(server: RunningServer, headers: dict) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"ws://127.0.0.1:{server.port}/twilio", additional_headers=headers)
    assert refused.value.response.status_code == 403


async def test_signed_handshake_is_accepted(server: RunningServer) -> None:
    signature = twilio_signature(TOKEN, "wss://public.example/twilio")
    ws = await connect(
        f"ws://127.0.0.1:{server.port}/twilio",
        additional_headers={"X-Twilio-Signature": signature},
    )
    await ws.close()


async def test_when_deepgram_refuses_the_caller_hears_the_greeting_from_say(
    server: RunningServer, deepgram: FakeDeepgram, db: Path
) -> None:
    text = "Thanks for calling; Aura cannot speak today."
    with sqlite3.connect(db) as connection:  # new words, so no cached audio can answer
        connection.execute("UPDATE calls_greeting SET text = ?", (text,))
    deepgram.fail(401, times=5)
    report = await simulate_call(
        server.url, auth_token=TOKEN, public_url=PUBLIC, realtime_playback=False, timeout=10
    )
    assert report.handshake_status == 101
    assert report.heard == b""
    assert report.close_code == 1000  # the server ended the stream, so Twilio's TwiML goes on
    assert len(deepgram.requests) == 1
    status, ended_at, error = call_row(db, report.call_sid)
    assert (status, ended_at is not None) == ("failed", True)
    assert "Invalid credentials." in error
    connect = ET.fromstring(report.twiml).find("Connect")
    assert connect is not None
    action = connect.get("action")
    assert action is not None
    assert action.startswith(PUBLIC + "/voice/after-stream?greeting=")
    form = {"CallSid": report.call_sid, "CallStatus": "in-progress"}
    async with httpx.AsyncClient() as client:
        response = await client.post(
            server.url + action.removeprefix(PUBLIC),
            data=form,
            headers={"X-Twilio-Signature": twilio_signature(TOKEN, action, form)},
        )
    assert response.status_code == 200
    verbs = [(verb.tag, verb.text) for verb in ET.fromstring(response.text)]
    assert verbs == [("Say", text), ("Hangup", None)]


async def test_sigterm_mid_call_drains_then_hands_the_call_over(
    deepgram: FakeDeepgram, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite3"
    env = {**production_env(deepgram, db), "DRAIN_SECONDS": "1.5"}
    migrate(env)
    deepgram.hold()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    times: dict[str, float] = {}
    with running_daphne(env, tmp_path / "daphne.log") as server:

        def on_event(name: str, message: dict) -> None:
            if name == "media" and not stopped.is_set():
                stopped.set()
                times["sigterm"] = loop.time()
                server.process.send_signal(signal.SIGTERM)

        report = await simulate_call(
            server.url,
            auth_token=TOKEN,
            public_url=PUBLIC,
            realtime_playback=False,
            on_event=on_event,
            timeout=15,
        )
        times["closed"] = loop.time()
        assert stopped.is_set(), (report.errors, server.log())
        await asyncio.to_thread(server.process.wait, 15)
        log = server.log()
    deepgram.release()
    # The call went on through the drain, then its stream was closed cleanly: Twilio's action
    # request starts it again on a live worker.
    assert times["closed"] - times["sigterm"] >= 1.4, log
    assert "1 open call(s) have 1.5 s to finish" in log, log
    assert "handing 1 open call(s) over to another worker" in log, log
    assert report.close_code == 1000, (report.errors, log)
    status, ended_at, _ = call_row(db, report.call_sid)
    assert (status, ended_at) == ("in-progress", None), log
