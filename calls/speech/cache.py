"""Finished audio kept by speech key: in this process' memory, in front of the shared cache."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict

from calls.server.cache_calls import CacheUnavailable, cache_call

MEMORY_BUDGET_BYTES = 64 * 1024 * 1024
CACHE_ALIAS = "speech"


class MemoryCache:
    """A byte-bounded LRU of finished audio in this process, in front of the shared cache."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            audio = self._items.get(key)
            if audio is not None:
                self._items.move_to_end(key)
            return audio

    def put(self, key: str, audio: bytes) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._items[key] = audio
            self._size += len(audio)
            while self._size > self._budget and len(self._items) > 1:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


memory = MemoryCache(MEMORY_BUDGET_BYTES)


async def shared_get(key: str) -> bytes | None:
    """Read audio from the shared cache; None when it has none or cannot answer."""
    # A shared cache that is down is a miss: the speech comes from Deepgram instead.
    try:
        return await cache_call(CACHE_ALIAS, "get", key)
    except CacheUnavailable:
        return None


async def from_shared(key: str) -> bytes | None:
    """Read audio from the shared cache, keeping it in this process' memory when found."""
    return kept(key, await shared_get(key))


def kept(key: str, audio: bytes | None) -> bytes | None:
    """Keep audio read from the shared cache in this process' memory too, and return it."""
    if audio is not None:
        memory.put(key, audio)
    return audio


async def shared_set(key: str, audio: bytes) -> None:
    """Store finished audio in the shared cache, if it answers."""
    # Kept in this process' memory already; the cache's outage was logged when it began.
    with contextlib.suppress(CacheUnavailable):
        await cache_call(CACHE_ALIAS, "set", key, audio, None)
