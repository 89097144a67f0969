"""Django cache calls from async code: in-process caches inline, the others off the event loop,
and a shared cache that is down remembered as down for a moment."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# What an unreachable or stalled cache server raises; any other error is a bug and propagates.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# While a cache is known down its calls fail at once: no call pays a connect timeout per read.
DOWN_SECONDS = 2.0


class CacheUnavailable(Exception):
    """A shared cache that cannot be reached right now."""

    def __init__(self, alias: str) -> None:
        super().__init__(f"the {alias!r} cache (Redis) is unreachable")
        self.alias = alias


class _Health:
    """Whether one cache answered lately, and how many outages it has had."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.down_until = 0.0
        self.down_since: float | None = None
        self.outages = 0
        self._lock = threading.Lock()

    def check(self) -> None:
        if time.monotonic() < self.down_until:
            raise CacheUnavailable(self.alias)

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self.down_until = now + DOWN_SECONDS
            if self.down_since is not None:
                return
            self.down_since = now
            self.outages += 1
        logger.warning(
            "cache %r unreachable (%s): treated as down, retried every %.0f s",
            self.alias,
            exc,
            DOWN_SECONDS,
        )

    def answered(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            since, self.down_since = self.down_since, None
        if since is not None:
            logger.warning(
                "cache %r reachable again after %.1f s", self.alias, time.monotonic() - since
            )


_health: dict[tuple[str, str, str], _Health] = {}


def _health_of(alias: str) -> _Health:
    # Per server, not per alias alone: tests and settings changes point an alias elsewhere.
    conf = settings.CACHES[alias]
    server = (alias, conf["BACKEND"], str(conf.get("LOCATION", "")))
    health = _health.get(server)
    if health is None:
        health = _health.setdefault(server, _Health(alias))
    return health


def outages(alias: str) -> int:
    """How many times this process has found the cache `alias` unreachable."""
    return _health_of(alias).outages


def runs_inline(alias: str, method: str) -> bool:
    """Whether `caches[alias].<method>` is cheap enough to call on the event loop."""
    cache = caches[alias]
    # A dictionary under a lock: a thread hop would cost far more than the call.
    if isinstance(cache, LocMemCache):
        return True
    # Reading a local file: a miss is one failed open(), a hit one read that memory then
    # keeps. Under a burst of calls the hop to a thread waits milliseconds for the
    # interpreter lock, in front of the Deepgram request. Writes still go to a thread.
    return isinstance(cache, FileBasedCache) and method == "get"


def _guarded(alias: str, method: str) -> Callable[..., Any]:
    """`caches[alias].<method>`, raising CacheUnavailable while its server is unreachable."""
    operation = getattr(caches[alias], method)
    health = _health_of(alias)

    def call(*args: Any) -> Any:
        health.check()
        try:
            result = operation(*args)
        except UNREACHABLE as exc:
            health.failed(exc)
            raise CacheUnavailable(alias) from exc
        health.answered()
        return result

    return call


async def cache_call(alias: str, method: str, *args: Any) -> Any:
    """Call `caches[alias].<method>(*args)` without blocking the event loop on I/O."""
    if runs_inline(alias, method):
        return getattr(caches[alias], method)(*args)
    health = _health_of(alias)
    # Known down: fail here, without the hop to a thread.
    health.check()
    # Redis' client and file writes block; run them in parallel threads, not the one
    # thread that database writes share.
    return await sync_to_async(_guarded(alias, method), thread_sensitive=False)(*args)


def cache_call_now(alias: str, method: str, *args: Any) -> Any:
    """Call `caches[alias].<method>(*args)` from synchronous code, failing fast while it is down."""
    return _guarded(alias, method)(*args)
