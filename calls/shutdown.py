"""Ends the calls still open when the server stops, so none is left "in progress"."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Ender = Callable[[], Awaitable[None]]

_open: set[Ender] = set()
_hooked = False
_draining = False


def draining() -> bool:
    """Whether this process has been told to stop and takes no new streams."""
    return _draining


def track(end: Ender) -> None:
    """Remember an open call and how to end it if the server stops."""
    _hook_server_shutdown()
    _open.add(end)


def untrack(end: Ender) -> None:
    """Forget a call that has ended."""
    _open.discard(end)


async def end_open_calls() -> None:
    """End every open call (the server is stopping)."""
    enders = list(_open)
    if enders:
        logger.warning("server stopping: ending %d open call(s)", len(enders))
        await asyncio.gather(*(end() for end in enders), return_exceptions=True)


def _hook_server_shutdown() -> None:
    # daphne 4.2 cancels no application on SIGTERM (its shutdown trigger stops at the first
    # finished HTTP connection with a KeyError), so open streams would simply vanish. Twisted
    # waits for a "before shutdown" trigger's Deferred: ours writes the open calls' records.
    global _hooked
    if _hooked:
        return
    _hooked = True
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        return
    from twisted.internet import defer

    def on_shutdown() -> defer.Deferred[None]:
        return defer.Deferred.fromFuture(asyncio.ensure_future(end_open_calls()))

    reactor.addSystemEventTrigger("before", "shutdown", on_shutdown)
