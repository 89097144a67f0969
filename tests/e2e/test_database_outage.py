"""Calls through a PostgreSQL outage: a private server stopped under a running daphne."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from calls.records.queries import FALLBACK_GREETING
from calls.twilio.protocol import GREETING_MARK
from calls.twilio.simulator import simulate_call
from devtools import private_postgres
from devtools.devserver import migrate, running_daphne
from devtools.fake_deepgram import fake_audio, running_in_thread
from tests.bridge import bridge_env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        private_postgres.missing() is not None, reason=str(private_postgres.missing())
    ),
]

# About ten seconds of speech: a call answered just before the outage is still playing it
# when PostgreSQL comes back.
GREETING = (FALLBACK_GREETING.text + " ") * 40
VOICE = "aura-asteria-en"
OUTAGE_SECONDS = 8.0


def rows(url: str) -> dict[str, tuple[str, int]]:
    """Every call's status and stream count, read straight from the server."""
    with psycopg.connect(url, connect_timeout=3) as conn:
        found = conn.execute("SELECT call_sid, status, streams FROM calls_call").fetchall()
    return {sid: (status, streams) for sid, status, streams in found}


async def wait_for_rows(url: str, want: dict[str, str], timeout: float) -> float:
    """Wait until each CallSid's row has the status wanted ("ended": any but in-progress)."""
    began = time.monotonic()
    while True:
        found = await asyncio.to_thread(rows, url)
        if all(
            sid in found
            and (found[sid][0] != "in-progress" if s == "ended" else found[sid][0] == s)
            for sid, s in want.items()
        ):
            return time.monotonic() - began
        assert time.monotonic() - began < timeout, (want, found)
        await asyncio.sleep(0.2)


async def timed_webhook(base_url: str, call_sid: str) -> tuple[int, str, float]:
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            base_url + "/voice", data={"CallSid": call_sid, "To": "+15550100000"}
        )
    return response.status_code, response.text, time.monotonic() - began


async def test_calls_go_on_through_a_database_outage(tmp_path: Path) -> None:
    with private_postgres.private_postgres() as pg, running_in_thread() as deepgram:
        url = pg.create_database("voicebridge")
        env = bridge_env(tmp_path, deepgram.url, {"DATABASE_URL": url})
        migrate(env)
        with psycopg.connect(url) as conn:
            conn.execute("UPDATE calls_greeting SET text = %s WHERE is_default", [GREETING])
        with running_daphne(env, tmp_path / "daphne.log") as server:
            # Reads the greeting and renders its speech before the outage, as a running
            # server would have.
            assert (await simulate_call(server.url, call_sid="CAwarm", timeout=30)).ok
            live = asyncio.create_task(simulate_call(server.url, call_sid="CAlive", timeout=40))
            ending = asyncio.create_task(
                simulate_call(server.url, call_sid="CAending", hang_up_after=3, until_mark=None)
            )
            await wait_for_rows(url, {"CAlive": "in-progress", "CAending": "in-progress"}, 10)

            await asyncio.to_thread(pg.stop)
            down_at = time.monotonic()
            webhooks = [await timed_webhook(server.url, f"CAhook{n}") for n in range(3)]
            starting = await asyncio.gather(
                *(
                    simulate_call(
                        server.url, call_sid=f"CAdown{n}", hang_up_after=1.5, until_mark=None
                    )
                    for n in range(4)
                )
            )
            assert (await ending).ok
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
            await asyncio.to_thread(pg.start)

            kept = {"CAending": "ended", **{f"CAdown{n}": "ended" for n in range(4)}}
            written_after = await wait_for_rows(url, kept, 60)
            after = await asyncio.gather(
                *(simulate_call(server.url, call_sid=f"CAafter{n}", timeout=30) for n in range(3))
            )
            live_report = await live
            await wait_for_rows(
                url, {"CAlive": "ended", **{f"CAafter{n}": "ended" for n in range(3)}}, 30
            )
            log = server.log()

    # The call answered before the outage played its whole greeting through it.
    assert live_report.ok, live_report.errors
    assert live_report.heard == fake_audio(VOICE, GREETING.strip())
    assert GREETING_MARK in live_report.marks
    # Webhooks while the database is down greet the caller, within Twilio's 15 s.
    for status, twiml, seconds in webhooks:
        assert status == 200 and f"<Say>{FALLBACK_GREETING.say_text}</Say>" in twiml
        assert "<Stream" in twiml and seconds < 10
    assert all(report.ok for report in starting), [r.errors for r in starting]
    assert all(report.ok for report in after), [r.errors for r in after]
    assert '" 500 ' not in log
    assert log.count("answering with the copy in memory") >= len(webhooks) + len(starting)
    assert "wrote" in log and "kept call records after" in log
    print(
        f"\nwebhook answer while the database is down: "
        f"{', '.join(f'{s:.2f} s' for _, _, s in webhooks)}; "
        f"kept records written {written_after:.1f} s after PostgreSQL returned"
    )
