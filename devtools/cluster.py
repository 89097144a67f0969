"""Several daphne workers sharing Redis and a scratch PostgreSQL database, and one call driven
across them: answered by one worker, spoken to and hung up through another's control API."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from calls.twilio.protocol import GREETING_MARK
from calls.twilio.simulator import CallReport, simulate_call
from devtools import backing
from devtools.devserver import RunningServer, migrate, running_daphne, server_env

_RETRY_NOT_LIVE_FOR = 5.0


@dataclass(frozen=True)
class Cluster:
    """Workers serving one voicebridge: same database, same channel layer, same API token."""

    workers: tuple[RunningServer, ...]
    database_url: str
    redis_url: str
    api_token: str

    def logs(self) -> str:
        """Return every worker's log, for failure messages."""
        return "\n".join(f"--- {w.url}\n{w.log()}" for w in self.workers)


def missing_servers() -> str | None:
    """Return why a cluster cannot run here (Redis or PostgreSQL absent), or None."""
    reasons = [r for r in (backing.redis_missing(), backing.postgres_missing()) if r]
    return "; ".join(reasons) or None


@contextmanager
def running_cluster(
    *, workers: int, deepgram_url: str, tmp_dir: Path, env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """Run `workers` daphne processes on a fresh PostgreSQL database and an empty Redis one."""
    token = secrets.token_urlsafe(24)
    with (
        backing.scratch_database("voicebridge_cluster") as database_url,
        backing.scratch_redis() as redis_url,
        ExitStack() as stack,
    ):
        worker_env = server_env(
            {
                "DEBUG": "true",
                "SECRET_KEY": secrets.token_urlsafe(32),
                "ALLOWED_HOSTS": "127.0.0.1",
                "SECURE_SSL_REDIRECT": "false",
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "DEEPGRAM_API_URL": deepgram_url,
                "DEEPGRAM_API_KEY": "cluster-key",
                "VOICEBRIDGE_API_TOKEN": token,
                "LOG_LEVEL": "WARNING",
                **(env or {}),
            }
        )
        migrate(worker_env)
        running = tuple(
            stack.enter_context(running_daphne(worker_env, tmp_dir / f"worker-{n}.log"))
            for n in range(1, workers + 1)
        )
        yield Cluster(running, database_url, redis_url, token)


@dataclass(frozen=True)
class ControlledCall:
    """What a caller on one worker heard while another worker's API spoke to it and hung up."""

    report: CallReport
    say_status: int | None
    hangup_status: int | None
    # From sending the say request to its first audio reaching the caller.
    say_to_audio: float | None


async def call_controlled_elsewhere(
    caller_url: str, api_url: str, api_token: str, text: str, *, timeout: float = 30.0
) -> ControlledCall:
    """Call `caller_url`; after the greeting say `text` and then hang up, both via `api_url`."""
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"call_sid": "", "asked_at": None, "heard_at": None}
    statuses: dict[str, int] = {}
    tasks: list[asyncio.Task[None]] = []
    client = httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {api_token}"}, timeout=timeout
    )

    async def command(name: str, body: dict[str, Any] | None = None) -> None:
        deadline = loop.time() + _RETRY_NOT_LIVE_FOR
        # The greeting's mark can in principle beat the call's registration for control.
        while True:
            if name == "say":
                state["asked_at"] = loop.time()
            response = await client.post(f"/api/calls/{state['call_sid']}/{name}", json=body)
            if response.status_code != 404 or loop.time() > deadline:
                statuses[name] = response.status_code
                return
            await asyncio.sleep(0.05)

    def on_event(event: str, message: dict[str, Any]) -> None:
        if event == "media" and state["asked_at"] is not None and state["heard_at"] is None:
            state["heard_at"] = loop.time()
        elif event == "mark" and message["mark"]["name"] == GREETING_MARK:
            tasks.append(loop.create_task(command("say", {"text": text})))
        elif event == "mark" and message["mark"]["name"] == "say-1":
            tasks.append(loop.create_task(command("hangup")))

    call_sid = "CA" + secrets.token_hex(16)
    state["call_sid"] = call_sid
    try:
        report = await simulate_call(
            caller_url,
            call_sid=call_sid,
            until_mark=None,
            realtime_playback=False,
            timeout=timeout,
            on_event=on_event,
        )
        await asyncio.gather(*tasks)
    finally:
        await client.aclose()
    heard_at, asked_at = state["heard_at"], state["asked_at"]
    return ControlledCall(
        report=report,
        say_status=statuses.get("say"),
        hangup_status=statuses.get("hangup"),
        say_to_audio=heard_at - asked_at if heard_at is not None and asked_at is not None else None,
    )
