"""Workers die, calls don't: a call whose worker is killed or told to stop goes on in a new
stream on another worker, through Twilio's action request."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from calls.records.queries import FALLBACK_GREETING
from calls.twilio.protocol import GREETING_MARK
from calls.twilio.simulator import simulate_call
from devtools.devserver import RunningServer, migrate, running_daphne
from devtools.fake_deepgram import FakeDeepgram, fake_audio, running_in_thread
from tests.bridge import bridge_env

pytestmark = pytest.mark.e2e

GREETING = fake_audio(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)


@pytest.fixture
def deepgram() -> Iterator[FakeDeepgram]:
    with running_in_thread(chunk_size=400) as server:
        yield server


def workers(
    stack: ExitStack, tmp: Path, deepgram: FakeDeepgram, **overrides: str
) -> tuple[RunningServer, RunningServer, Path]:
    """Two daphne workers on one database, as behind a load balancer."""
    env = bridge_env(tmp, deepgram.url, overrides)
    migrate(env)
    first, second = (
        stack.enter_context(running_daphne(env, tmp / f"worker-{n}.log")) for n in (1, 2)
    )
    return first, second, tmp / "db.sqlite3"


def call_row(db: Path, call_sid: str) -> tuple[str, int]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT status, streams FROM calls_call WHERE call_sid = ?", (call_sid,)
        ).fetchone()


async def test_a_call_whose_worker_is_killed_goes_on_on_another(
    deepgram: FakeDeepgram, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        first, second, db = workers(stack, tmp_path, deepgram)
        deepgram.hold()
        killed = asyncio.Event()

        def kill() -> None:
            first.process.kill()
            deepgram.release()

        def on_event(name: str, message: dict) -> None:
            # Mid-greeting, once the call's row is written.
            if name == "media" and not killed.is_set():
                killed.set()
                asyncio.get_running_loop().call_later(0.3, kill)

        report = await simulate_call(
            first.url,
            failover=[second.url],
            realtime_playback=False,
            on_event=on_event,
            timeout=20,
        )
        logs = first.log() + second.log()
    assert killed.is_set(), logs
    assert not report.errors, (report.errors, report.path, logs)
    broken, resumed = report.streams
    assert broken.ended_by == "dropped"
    # The greeting starts again in the new stream, on the live worker.
    assert resumed.heard_bytes == len(GREETING)
    assert resumed.marks == (GREETING_MARK,)
    assert call_row(db, report.call_sid) == ("completed", 2), logs


async def test_a_worker_told_to_stop_drains_then_hands_its_calls_over(
    deepgram: FakeDeepgram, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        first, second, db = workers(stack, tmp_path, deepgram, DRAIN_SECONDS="1")
        deepgram.hold()
        loop = asyncio.get_running_loop()
        times: dict[str, float] = {}

        def on_event(name: str, message: dict) -> None:
            if name == "media" and "sigterm" not in times:
                times["sigterm"] = loop.time()
                first.process.send_signal(signal.SIGTERM)
            elif name == "stream-started" and "sigterm" in times:
                times["resumed"] = loop.time()
                deepgram.release()

        report = await simulate_call(
            first.url,
            failover=[second.url],
            realtime_playback=False,
            on_event=on_event,
            timeout=20,
        )
        await asyncio.to_thread(first.process.wait, 10)
        logs = first.log() + second.log()
    assert not report.errors, (report.errors, report.path, logs)
    drained, resumed = report.streams
    # The call stayed on the stopping worker for the drain, then was closed cleanly.
    assert (drained.ended_by, drained.close_code) == ("server", 1000)
    assert times["resumed"] - times["sigterm"] >= 0.9, logs
    assert "handing 1 open call(s) over to another worker" in first.log()
    assert resumed.heard_bytes == len(GREETING)
    assert first.process.returncode is not None
    assert call_row(db, report.call_sid) == ("completed", 2), logs
