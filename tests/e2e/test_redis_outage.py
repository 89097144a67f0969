"""Redis stopped mid-call and started again: calls go on, the API says 503, all of it recovers."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pytest_django.fixtures import Settings

from calls.records.queries import FALLBACK_GREETING
from calls.server.cache_calls import CacheUnavailable, cache_call
from calls.speech import synthesis
from calls.speech.cache import CACHE_ALIAS
from calls.speech.text import speech_key
from calls.twilio.protocol import GREETING_MARK
from calls.twilio.simulator import CallReport, simulate_call
from devtools import backing
from devtools.cluster import Cluster, running_cluster
from devtools.devserver import free_port
from devtools.fake_deepgram import fake_audio, running_in_thread
from devtools.private_redis import PrivateRedis, private_redis, redis_server_missing

AUTH_TOKEN = "outage-test-twilio-token"
LONG_SAY = "Please hold while we find your table. " * 8
TABLE_READY = "Your table is ready."
OUTAGE_SECONDS = 8.0


def _down_redis(settings: Settings, alias: str) -> None:
    settings.CACHES = {
        **settings.CACHES,
        alias: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            # Nothing listens there: a Redis that is down.
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5},
        },
    }


async def test_a_cache_found_down_fails_fast_for_a_moment(settings: Settings) -> None:
    _down_redis(settings, "default")
    with pytest.raises(CacheUnavailable):
        await cache_call("default", "get", "k")
    started = time.monotonic()
    for _ in range(100):
        with pytest.raises(CacheUnavailable):
            await cache_call("default", "get", "k")
    # No connection attempt while it is known down.
    assert time.monotonic() - started < 0.1


async def test_speech_cache_errors_are_misses(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    _down_redis(settings, CACHE_ALIAS)
    assert await synthesis.open_cached(speech_key("aura-asteria-en", "Hi")) is None
    assert await synthesis.open_cached(speech_key("aura-asteria-en", "Hi")) is None
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


# --- the real thing: two workers on a private Redis that is stopped and started again


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    reason = redis_server_missing() or backing.postgres_missing()
    if reason is not None:
        pytest.skip(f"the Redis outage test needs redis-server and PostgreSQL: {reason}")
    with private_redis() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    redis_server: PrivateRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("outage")
    with (
        running_in_thread() as deepgram,
        running_cluster(
            workers=2,
            deepgram_url=deepgram.url,
            tmp_dir=tmp,
            env={"REDIS_URL": redis_server.url, "TWILIO_AUTH_TOKEN": AUTH_TOKEN},
        ) as running,
    ):
        yield running


class HeldCall:
    """A call on one worker that stays on the line, playing audio in real time."""

    def __init__(self, worker_url: str) -> None:
        self.call_sid = "CA" + secrets.token_hex(16)
        self.marks: dict[str, asyncio.Event] = {}
        self.task = asyncio.get_running_loop().create_task(
            simulate_call(
                worker_url,
                call_sid=self.call_sid,
                auth_token=AUTH_TOKEN,
                until_mark=None,
                timeout=180,
                on_event=self._on_event,
            )
        )

    def _on_event(self, event: str, message: dict) -> None:
        if event == "mark":
            self.mark(message["mark"]["name"]).set()

    def mark(self, name: str) -> asyncio.Event:
        return self.marks.setdefault(name, asyncio.Event())

    async def heard(self, name: str, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            await self.mark(name).wait()


async def _until(
    status: int, post: Callable[[], Awaitable[httpx.Response]], timeout: float = 60
) -> tuple[float, httpx.Response]:
    """Repeat `post()` until it answers `status`; return how long that took and the answer."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while (response := await post()).status_code != status:
            await asyncio.sleep(0.05)
    return time.monotonic() - started, response


@pytest.mark.e2e
async def test_calls_survive_redis_stopping_and_everything_recovers_when_it_returns(
    cluster: Cluster, redis_server: PrivateRedis
) -> None:
    first, second = cluster.workers
    held = [HeldCall(first.url), HeldCall(second.url)]
    for call in held:
        await call.heard(GREETING_MARK)
    headers = {"Authorization": f"Bearer {cluster.api_token}"}
    api = httpx.AsyncClient(base_url=second.url, headers=headers, timeout=10)
    other_api = httpx.AsyncClient(base_url=first.url, headers=headers, timeout=10)
    try:
        # Each call starts a few seconds of speech whose mark comes back during the outage.
        for call, through in zip(held, (api, other_api), strict=True):
            say = await through.post(f"/api/calls/{call.call_sid}/say", json={"text": LONG_SAY})
            assert say.status_code == 202, cluster.logs()[-3000:]

        redis_server.stop()
        stopped_at = time.monotonic()
        to_503, refused = await _until(
            503,
            lambda: api.post(f"/api/calls/{held[0].call_sid}/say", json={"text": TABLE_READY}),
        )
        assert refused.headers["Content-Type"] == "application/json"
        assert refused.json()["error"]

        # A new call is greeted, its signed stream accepted, while Redis is down.
        new_call: CallReport = await simulate_call(
            first.url, auth_token=AUTH_TOKEN, realtime_playback=False, timeout=30
        )
        assert new_call.ok, (new_call.errors, cluster.logs()[-3000:])
        assert new_call.audio == fake_audio(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)

        for call in held:
            await call.heard("say-1")
        # Longer than the 5 s that channels_redis blocks reading, and than the seconds in
        # which every call once closed.
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
        assert not any(call.task.done() for call in held), cluster.logs()[-3000:]
        outage = time.monotonic() - stopped_at

        redis_server.start()
        to_202, _ = await _until(
            202,
            lambda: api.post(f"/api/calls/{held[0].call_sid}/say", json={"text": TABLE_READY}),
        )
        back_202, _ = await _until(
            202,
            lambda: other_api.post(
                f"/api/calls/{held[1].call_sid}/say", json={"text": TABLE_READY}
            ),
        )
        for call, through in zip(held, (api, other_api), strict=True):
            hangup = await through.post(f"/api/calls/{call.call_sid}/hangup")
            assert hangup.status_code == 202
    finally:
        await api.aclose()
        await other_api.aclose()
    reports = await asyncio.gather(*(call.task for call in held))
    for report in reports:
        assert not report.errors, (report.errors, cluster.logs()[-3000:])
        # A say answered 503 as Redis returned may have been spoken too: the one answered 202
        # is the last.
        assert report.marks[:2] == (GREETING_MARK, "say-1")
        assert report.marks[-1].startswith("say-") and len(report.marks) >= 3
        assert report.close_code == 1000
    for worker in cluster.workers:
        log = worker.log()
        assert log.count("channel layer: Redis unreachable") <= 1, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    assert new_call.first_audio_after is not None
    print(
        f"\nRedis outage figures: stop to API 503 {to_503 * 1000:.0f} ms;"
        f" new call's first audio while down {new_call.first_audio_after * 1000:.0f} ms;"
        f" Redis back to API 202 {to_202 * 1000:.0f} ms (other worker {back_202 * 1000:.0f} ms);"
        f" outage {outage:.1f} s"
    )
