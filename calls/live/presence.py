"""Which calls are live on any worker: a presence key per call in the shared cache, holding the
channel name of the consumer that holds the call."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from calls.server.cache_calls import CacheUnavailable, cache_call, cache_call_now, outages
from calls.server.per_loop import PerLoop

logger = logging.getLogger(__name__)

CACHE_ALIAS = "default"
# A worker refreshes its calls' keys this often; a killed worker's calls vanish one TTL later.
REFRESH_SECONDS = 20.0
TTL_SECONDS = 60
# After the cache was unreachable, this worker writes its calls' keys again this often until
# it succeeds: a restarted Redis has forgotten them.
RETRY_SECONDS = 1.0
# An ended call's key holds this instead of a channel, for one TTL.
ENDED = "ended"

_SAFE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Whereabouts:
    """Where a call is: the channel of the consumer holding it, or whether it ended lately."""

    channel: str | None
    ended: bool = False


def _key(call_sid: str) -> str:
    # Cache keys must be short and plain for every backend; a CallSid comes from outside.
    if _SAFE.fullmatch(call_sid):
        return f"live-call:{call_sid}"
    return "live-call:h" + hashlib.sha256(call_sid.encode("utf-8", "surrogatepass")).hexdigest()


async def announce(call_sid: str, channel: str) -> None:
    """Record that this call's consumer is reachable on `channel`, and keep it so."""
    presence = _presence()
    presence.add(call_sid, channel)
    try:
        await cache_call(CACHE_ALIAS, "set", _key(call_sid), channel, TTL_SECONDS)
    except CacheUnavailable:
        # The refresher writes the key once the cache answers again.
        presence.missed()


async def withdraw(call_sid: str) -> None:
    """Record that this call has ended and is no longer reachable."""
    _presence().discard(call_sid)
    # Unreachable: the key expires within one TTL.
    with contextlib.suppress(CacheUnavailable):
        await cache_call(CACHE_ALIAS, "set", _key(call_sid), ENDED, TTL_SECONDS)


async def whereabouts(call_sid: str) -> Whereabouts:
    """Find the consumer holding this call; raises CacheUnavailable when the cache is down."""
    value = await cache_call(CACHE_ALIAS, "get", _key(call_sid))
    if value == ENDED:
        return Whereabouts(None, ended=True)
    return Whereabouts(value if isinstance(value, str) else None)


async def is_live(call_sid: str) -> bool:
    """Whether a consumer on some worker holds this call right now."""
    return (await whereabouts(call_sid)).channel is not None


def live_among(call_sids: Iterable[str]) -> set[str]:
    """Return which of these calls are live (one cache round trip); raises CacheUnavailable."""
    keys = {_key(sid): sid for sid in call_sids}
    found = cache_call_now(CACHE_ALIAS, "get_many", list(keys))
    return {keys[key] for key, value in found.items() if value != ENDED}


class _Presence:
    """This worker's live calls, whose keys one task refreshes together."""

    def __init__(self) -> None:
        self.calls: dict[str, str] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._missed = False

    def add(self, call_sid: str, channel: str) -> None:
        self.calls[call_sid] = channel
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    def discard(self, call_sid: str) -> None:
        self.calls.pop(call_sid, None)

    def missed(self) -> None:
        self._missed = True

    async def _refresh(self) -> None:
        # One write per worker every REFRESH_SECONDS, not one task and one write per call.
        written_at = time.monotonic()
        seen_outages = outages(CACHE_ALIAS)
        while self.calls:
            await asyncio.sleep(RETRY_SECONDS)
            fresh = time.monotonic() - written_at < REFRESH_SECONDS
            if fresh and not self._missed and outages(CACHE_ALIAS) == seen_outages:
                continue
            # Noted before writing: an outage that begins during the write is written for.
            seen_outages, self._missed = outages(CACHE_ALIAS), False
            keys = {_key(call_sid): channel for call_sid, channel in self.calls.items()}
            try:
                await cache_call(CACHE_ALIAS, "set_many", keys, TTL_SECONDS)
            except CacheUnavailable:
                self._missed = True
                continue
            except Exception:
                logger.warning("refreshing %d live calls failed", len(keys), exc_info=True)
            written_at = time.monotonic()


_presence = PerLoop(_Presence)
