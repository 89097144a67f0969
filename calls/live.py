"""Which calls are live on any worker: a presence key per call in the shared cache, and the
channel-layer group that reaches the call's consumer."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Iterable

from django.core.cache import caches

from calls.cache_calls import cache_call
from calls.per_loop import PerLoop

logger = logging.getLogger(__name__)

CACHE_ALIAS = "default"
# A worker refreshes its calls' keys this often; a killed worker's calls vanish one TTL later.
REFRESH_SECONDS = 20.0
TTL_SECONDS = 60

_GROUP_SAFE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def group_name(call_sid: str) -> str:
    """Name the channel-layer group of a call (groups allow only short ASCII names)."""
    if _GROUP_SAFE.fullmatch(call_sid):
        return f"call.{call_sid}"
    return "call.h" + hashlib.sha256(call_sid.encode()).hexdigest()[:48]


def _key(call_sid: str) -> str:
    return f"live-call:{group_name(call_sid)}"


async def announce(call_sid: str) -> None:
    """Record that this call's consumer is reachable through its group, and keep it so."""
    await cache_call(CACHE_ALIAS, "set", _key(call_sid), 1, TTL_SECONDS)
    _presence().add(call_sid)


async def withdraw(call_sid: str) -> None:
    """Record that this call is no longer reachable."""
    _presence().discard(call_sid)
    await cache_call(CACHE_ALIAS, "delete", _key(call_sid))


class _Presence:
    """This worker's live calls, whose keys one task refreshes together."""

    def __init__(self) -> None:
        self.calls: set[str] = set()
        self._refresher: asyncio.Task[None] | None = None

    def add(self, call_sid: str) -> None:
        self.calls.add(call_sid)
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    def discard(self, call_sid: str) -> None:
        self.calls.discard(call_sid)

    async def _refresh(self) -> None:
        # One write per worker every REFRESH_SECONDS, not one task and one write per call.
        while self.calls:
            await asyncio.sleep(REFRESH_SECONDS)
            keys = {_key(call_sid): 1 for call_sid in self.calls}
            try:
                await cache_call(CACHE_ALIAS, "set_many", keys, TTL_SECONDS)
            except Exception:
                logger.warning("refreshing %d live calls failed", len(keys), exc_info=True)


_presence = PerLoop(_Presence)


async def is_live(call_sid: str) -> bool:
    """Whether a consumer on some worker holds this call right now."""
    return await cache_call(CACHE_ALIAS, "get", _key(call_sid)) is not None


def live_among(call_sids: Iterable[str]) -> set[str]:
    """Return which of these calls are live (one cache round trip)."""
    keys = {_key(sid): sid for sid in call_sids}
    found = caches[CACHE_ALIAS].get_many(list(keys))
    return {keys[key] for key in found}
