"""One object per event loop: daphne runs one loop, tests and admin renders may run others."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """Gives each running event loop its own object, made by `factory` on first use."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._objects: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self) -> T:
        """Return the running loop's object, making it when the loop has none yet."""
        loop = asyncio.get_running_loop()
        found = self._objects.get(loop)
        if found is None:
            found = self._objects[loop] = self._factory()
        return found

    def peek(self) -> T | None:
        """Return the running loop's object, or None when it has none yet."""
        return self._objects.get(asyncio.get_running_loop())

    def forget(self) -> T | None:
        """Drop the running loop's object and return it (None when it had none)."""
        return self._objects.pop(asyncio.get_running_loop(), None)
