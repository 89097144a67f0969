"""Long calls across two workers on Redis and PostgreSQL: each call arrives at one worker, is
held with caller media flowing, hears a `say` sent through the other worker's API, then is hung
up through it."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.report import Row, Spread, spread
from calls.twilio.protocol import GREETING_MARK
from calls.twilio.simulator import CallReport, simulate_call
from devtools.cluster import Cluster, missing_servers, running_cluster
from devtools.fake_deepgram import running_in_thread

SAY_MARK = "say-1"
ARRIVAL_SECONDS = 5.0
# Time past the hold for the say, its audio and the hang-up before the caller gives up.
_GRACE_SECONDS = 30.0
_RETRY_NOT_LIVE_FOR = 5.0


@dataclass(frozen=True)
class LongCall:
    """What one held call saw: its streams and TwiML path, and the API's answers."""

    report: CallReport
    caller_worker: int
    heard_greeting: bool
    say_status: int | None
    hangup_status: int | None
    say_to_audio: float | None

    @property
    def kept(self) -> bool:
        """Whether the call stayed up through the hold, heard the say and was hung up by the API."""
        return (
            self.heard_greeting
            and self.say_to_audio is not None
            and self.hangup_status in (202, 409)
            and self.report.path[-1:] == ("hangup",)
            and all(stream.ended_by == "server" for stream in self.report.streams)
            and not self.report.errors
        )

    def close_codes(self) -> tuple[int | None, ...]:
        """How each of the call's streams ended."""
        return tuple(stream.close_code for stream in self.report.streams)


def run_long_calls(*, calls: int = 20, hold: float = 120.0) -> dict[str, Any]:
    """Hold `calls` calls for `hold` seconds on a two-worker cluster; return the figures."""
    reason = missing_servers()
    if reason is not None:
        return {"skipped": reason}
    with (
        tempfile.TemporaryDirectory(prefix="voicebridge-bench-") as tmp,
        running_in_thread(ttfb=0.0) as deepgram,
        running_cluster(workers=2, deepgram_url=deepgram.url, tmp_dir=Path(tmp)) as cluster,
    ):
        held = asyncio.run(hold_calls(cluster, calls=calls, hold=hold))
        return summarise(held, hold=hold)


async def hold_calls(cluster: Cluster, *, calls: int, hold: float) -> list[LongCall]:
    """Place the calls spread over a few seconds, alternating between the workers."""
    arrival = min(ARRIVAL_SECONDS, hold)
    clients = [
        httpx.AsyncClient(
            base_url=worker.url,
            headers={"Authorization": f"Bearer {cluster.api_token}"},
            timeout=30,
        )
        for worker in cluster.workers
    ]
    try:

        async def placed(n: int) -> LongCall:
            await asyncio.sleep(arrival * n / calls)
            caller = n % len(cluster.workers)
            api = clients[(caller + 1) % len(clients)]
            return await _held_call(cluster.workers[caller].url, caller, api, hold)

        return list(await asyncio.gather(*(placed(n) for n in range(calls))))
    finally:
        for client in clients:
            await client.aclose()


async def _held_call(url: str, caller: int, api: httpx.AsyncClient, hold: float) -> LongCall:
    """One call: greeting, `hold` seconds of caller media, a say and a hang-up through `api`."""
    loop = asyncio.get_running_loop()
    call_sid = "CA" + secrets.token_hex(16)
    times: dict[str, float] = {}
    statuses: dict[str, int] = {}
    tasks: list[asyncio.Task[None]] = []

    async def command(name: str, body: dict[str, Any] | None = None) -> None:
        deadline = loop.time() + _RETRY_NOT_LIVE_FOR
        while True:
            if name == "say":
                times["asked"] = loop.time()
            try:
                response = await api.post(f"/api/calls/{call_sid}/{name}", json=body)
            except httpx.HTTPError:
                statuses[name] = 0
                return
            # A hang-up is safe to repeat: after a 503 it is sent again, as the API's
            # Retry-After asks, and a 409 then means the first one got through.
            status = response.status_code
            again = status == 404 or (name == "hangup" and status == 503)
            if not again or loop.time() > deadline:
                statuses[name] = status
                return
            await asyncio.sleep(float(response.headers.get("Retry-After", "0.05")))

    async def say_after_hold() -> None:
        await asyncio.sleep(max(0.0, times["started"] + hold - loop.time()))
        await command("say", {"text": "Your table is ready. Please come to the front desk."})

    def on_event(event: str, message: dict[str, Any]) -> None:
        if event == "stream-started" and "started" not in times:
            times["started"] = loop.time()
        elif event == "media" and "asked" in times and "heard" not in times:
            times["heard"] = loop.time()
        elif event == "mark" and message["mark"]["name"] == GREETING_MARK:
            if "greeting" not in times:
                times["greeting"] = loop.time()
                tasks.append(loop.create_task(say_after_hold()))
        elif event == "mark" and message["mark"]["name"] == SAY_MARK:
            tasks.append(loop.create_task(command("hangup")))

    try:
        report = await simulate_call(
            url,
            call_sid=call_sid,
            until_mark=None,
            hang_up_after=hold + _GRACE_SECONDS,
            timeout=hold + _GRACE_SECONDS + ARRIVAL_SECONDS + 10,
            on_event=on_event,
        )
    finally:
        # A call that ended early leaves its say waiting: it is not sent.
        for task in tasks:
            if not task.done() and "asked" not in times:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    asked, heard = times.get("asked"), times.get("heard")
    return LongCall(
        report=report,
        caller_worker=caller,
        heard_greeting="greeting" in times,
        say_status=statuses.get("say"),
        hangup_status=statuses.get("hangup"),
        say_to_audio=heard - asked if asked is not None and heard is not None else None,
    )


def summarise(held: Sequence[LongCall], *, hold: float) -> dict[str, Any]:
    """The phase's figures: calls kept and dropped, how the dropped ones ended, say latency."""
    dropped = [call for call in held if not call.kept]
    codes = Counter(str(code) for call in dropped for code in call.close_codes() or ("none",))
    latency = spread([c.say_to_audio for c in held if c.kept and c.say_to_audio is not None])
    return {
        "calls": len(held),
        "hold_seconds": hold,
        "kept": len(held) - len(dropped),
        "dropped": len(dropped),
        "dropped_close_codes": dict(codes),
        "dropped_after_seconds": sorted(
            round(sum(s.seconds for s in call.report.streams), 1) for call in dropped
        ),
        "say_to_audio_ms": latency,
        "dropped_examples": [
            {
                "caller_worker": call.caller_worker,
                "path": list(call.report.path),
                "errors": list(call.report.errors),
                "say_status": call.say_status,
                "hangup_status": call.hangup_status,
            }
            for call in dropped[:3]
        ],
    }


def long_call_rows(result: dict[str, Any]) -> list[Row]:
    """The phase's lines in the benchmark's table."""
    name = "long calls on Redis + PostgreSQL, two workers"
    if "skipped" in result:
        return [Row(name, f"skipped: {result['skipped']}", "every call kept")]
    codes = ", ".join(f"{code} x{count}" for code, count in result["dropped_close_codes"].items())
    measured = (
        f"{result['kept']}/{result['calls']} kept over {result['hold_seconds']:.0f} s; "
        f"{result['dropped']} dropped" + (f" (close codes {codes})" if codes else "")
    )
    latency: Spread = result["say_to_audio_ms"]
    return [
        Row(name, measured, "every call kept", result["dropped"] == 0),
        Row(
            "  say via the other worker -> first audio, long calls: p50 p99 (ms)",
            f"{latency.p50:.1f} {latency.p99:.1f} ({latency.count} calls)",
        ),
    ]
