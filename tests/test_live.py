"""Which calls are live: presence keys in the shared cache, refreshed per worker."""

from __future__ import annotations

import asyncio

import pytest
from django.core.cache import caches

from calls import live


@pytest.fixture(autouse=True)
def empty_presence_cache() -> None:
    caches[live.CACHE_ALIAS].clear()


async def test_announced_calls_are_live_until_withdrawn() -> None:
    await live.announce("CA1")
    await live.announce("CA2")
    assert await live.is_live("CA1")
    assert live.live_among(["CA1", "CA2", "CA3"]) == {"CA1", "CA2"}
    await live.withdraw("CA1")
    assert not await live.is_live("CA1")
    await live.withdraw("CA2")


async def test_one_task_keeps_every_live_call_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "REFRESH_SECONDS", 0.05)
    await live.announce("CA1")
    await live.announce("CA2")
    # The key expired (a dead worker's would) but this worker still holds the call.
    caches[live.CACHE_ALIAS].delete_many(["live-call:call.CA1", "live-call:call.CA2"])
    await asyncio.sleep(0.2)
    assert live.live_among(["CA1", "CA2"]) == {"CA1", "CA2"}
    await live.withdraw("CA1")
    await live.withdraw("CA2")
    await asyncio.sleep(0.1)
    assert live.live_among(["CA1", "CA2"]) == set()


def test_group_names_are_safe_for_any_call_sid() -> None:
    assert live.group_name("CA123") == "call.CA123"
    odd = live.group_name("CA with spaces/and*stars")
    assert odd.startswith("call.h") and len(odd) < 100


async def test_hundreds_of_calls_on_one_worker_all_stay_live() -> None:
    # Every call also leaves its used stream token in this cache for two minutes.
    sids = [f"CA{n}" for n in range(400)]
    for sid in sids:
        caches[live.CACHE_ALIAS].add(f"calls:stream-token:{sid}", 1, 120)
        await live.announce(sid)
    assert live.live_among(sids) == set(sids)
    for sid in sids:
        await live.withdraw(sid)
