"""Django cache calls from async code: in-process caches inline, the others off the event loop."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache


async def cache_call(alias: str, method: str, *args: Any) -> Any:
    """Call `caches[alias].<method>(*args)` without blocking the event loop on I/O."""
    cache = caches[alias]
    operation = getattr(cache, method)
    if isinstance(cache, LocMemCache):
        # A dictionary under a lock: a thread hop would cost far more than the call.
        return operation(*args)
    # Redis' client and the file cache block; run them in parallel threads, not the one
    # thread that database writes share.
    return await sync_to_async(operation, thread_sensitive=False)(*args)
