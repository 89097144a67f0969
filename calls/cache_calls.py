"""Django cache calls from async code: in-process caches inline, the others off the event loop."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache


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


async def cache_call(alias: str, method: str, *args: Any) -> Any:
    """Call `caches[alias].<method>(*args)` without blocking the event loop on I/O."""
    operation = getattr(caches[alias], method)
    if runs_inline(alias, method):
        return operation(*args)
    # Redis' client and file writes block; run them in parallel threads, not the one
    # thread that database writes share.
    return await sync_to_async(operation, thread_sensitive=False)(*args)
