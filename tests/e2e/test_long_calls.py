"""Calls held for a minute on two workers sharing Redis stay connected and controllable."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import httpx
import pytest

from calls.records.queries import FALLBACK_GREETING
from calls.twilio.protocol import GREETING_MARK
from calls.twilio.simulator import CallReport, simulate_call
from devtools.cluster import Cluster, missing_servers, running_cluster
from devtools.fake_deepgram import fake_audio, running_in_thread

pytestmark = pytest.mark.e2e

CALLS = 6
# Far past every 5-second timeout in the Redis path (socket reads, BZPOPMIN).
HOLD_SECONDS = 60.0
GREETING = fake_audio(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)
TABLE_READY = "Your table is ready."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = missing_servers()
    if reason is not None:
        pytest.skip(f"long calls on two workers need Redis and PostgreSQL: {reason}")
    with (
        running_in_thread() as deepgram,
        running_cluster(
            workers=2, deepgram_url=deepgram.url, tmp_dir=tmp_path_factory.mktemp("long")
        ) as running,
    ):
        yield running


class HeldCall:
    """One simulated call that stays on the line until the server ends it."""

    def __init__(self, worker_url: str) -> None:
        self.call_sid = "CA" + secrets.token_hex(16)
        self.greeted = asyncio.Event()
        self.said = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(
            simulate_call(
                worker_url,
                call_sid=self.call_sid,
                until_mark=None,
                realtime_playback=False,
                timeout=HOLD_SECONDS + 60,
                on_event=self._on_event,
            )
        )

    def _on_event(self, event: str, message: dict) -> None:
        if event == "mark" and message["mark"]["name"] == GREETING_MARK:
            self.greeted.set()
        elif event == "mark" and message["mark"]["name"] == "say-1":
            self.said.set()

    async def report(self) -> CallReport:
        return await self.task


async def test_calls_held_a_minute_stay_connected_and_hear_the_other_workers_say(
    cluster: Cluster,
) -> None:
    workers = cluster.workers
    calls = [HeldCall(workers[n % 2].url) for n in range(CALLS)]
    async with asyncio.timeout(30):
        await asyncio.gather(*(call.greeted.wait() for call in calls))
    await asyncio.sleep(HOLD_SECONDS)
    assert [call.call_sid for call in calls if call.task.done()] == [], cluster.logs()[-4000:]

    headers = {"Authorization": f"Bearer {cluster.api_token}"}
    statuses: list[int] = []
    for n, call in enumerate(calls):
        # Through the worker that does not hold the call.
        other = workers[(n + 1) % 2].url
        async with httpx.AsyncClient(base_url=other, headers=headers, timeout=10) as api:
            say = await api.post(f"/api/calls/{call.call_sid}/say", json={"text": TABLE_READY})
            statuses.append(say.status_code)
            async with asyncio.timeout(15):
                await call.said.wait()
            statuses.append((await api.post(f"/api/calls/{call.call_sid}/hangup")).status_code)
    assert statuses == [202] * (2 * CALLS), cluster.logs()[-4000:]

    reports = await asyncio.gather(*(call.report() for call in calls))
    for report in reports:
        assert not report.errors, (report.errors, cluster.logs()[-4000:])
        assert report.marks == (GREETING_MARK, "say-1")
        assert report.audio == GREETING + fake_audio("aura-asteria-en", TABLE_READY)
        # Closed by the server on the hang-up, not by an error (1011).
        assert report.close_code == 1000
        assert report.media_messages > 0
    assert "Timeout reading" not in cluster.logs()
