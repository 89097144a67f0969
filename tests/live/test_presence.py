"""Which calls are live: presence keys in the shared cache, refreshed per worker."""

from __future__ import annotations

import asyncio

import pytest
from django.core.cache import caches
from pytest_django.fixtures import Settings

from calls.live import presence
from calls.server.cache_calls import CacheUnavailable
from devtools.devserver import free_port

CHANNEL = "specific.inmemory!abc"


@pytest.fixture(autouse=True)
def empty_presence_cache() -> None:
    caches[presence.CACHE_ALIAS].clear()


async def test_announced_calls_are_live_on_their_channel_until_withdrawn() -> None:
    await presence.announce("CA1", CHANNEL)
    await presence.announce("CA2", CHANNEL + "2")
    assert await presence.whereabouts("CA1") == presence.Whereabouts(CHANNEL)
    assert presence.live_among(["CA1", "CA2", "CA3"]) == {"CA1", "CA2"}
    await presence.withdraw("CA1")
    assert not await presence.is_live("CA1")
    assert await presence.whereabouts("CA1") == presence.Whereabouts(None, ended=True)
    assert await presence.whereabouts("CA3") == presence.Whereabouts(None)
    assert presence.live_among(["CA1", "CA2"]) == {"CA2"}
    await presence.withdraw("CA2")


async def test_one_task_keeps_every_live_call_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "REFRESH_SECONDS", 0.05)
    monkeypatch.setattr(presence, "RETRY_SECONDS", 0.01)
    await presence.announce("CA1", CHANNEL)
    await presence.announce("CA2", CHANNEL)
    # The keys expired (a dead worker's would, or Redis restarted) but this worker holds the calls.
    caches[presence.CACHE_ALIAS].clear()
    await asyncio.sleep(0.2)
    assert presence.live_among(["CA1", "CA2"]) == {"CA1", "CA2"}
    await presence.withdraw("CA1")
    await presence.withdraw("CA2")
    await asyncio.sleep(0.1)
    assert presence.live_among(["CA1", "CA2"]) == set()


async def test_odd_call_sids_are_tracked_too() -> None:
    odd = "CA with spaces/and ünïcode" * 10
    await presence.announce(odd, CHANNEL)
    assert presence.live_among([odd, "CA1"]) == {odd}
    await presence.withdraw(odd)


async def test_hundreds_of_calls_on_one_worker_all_stay_live() -> None:
    # Every call also leaves its used stream token in this cache for two minutes.
    sids = [f"CA{n}" for n in range(400)]
    for sid in sids:
        caches[presence.CACHE_ALIAS].add(f"calls:stream-token:{sid}", 1, 120)
        await presence.announce(sid, CHANNEL)
    assert presence.live_among(sids) == set(sids)
    for sid in sids:
        await presence.withdraw(sid)


def test_live_among_raises_when_the_cache_cannot_be_read(settings: Settings) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            # Nothing listens there: a Redis that is down.
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5},
        },
    }
    with pytest.raises(CacheUnavailable):
        presence.live_among(["CA1"])
