"""Drains a worker told to stop: it takes no new streams, lets open calls finish for up to
DRAIN_SECONDS, then hands the rest over to another worker through Twilio's action request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol

from django.conf import settings

from calls.records.recorder import recorder

logger = logging.getLogger(__name__)

HandOver = Callable[[], Awaitable[None]]


class _Reactor(Protocol):
    """The parts of Twisted's running reactor used here (its interfaces need the zope plugin)."""

    def getReaders(self) -> list[object]: ...
    def stop(self) -> None: ...


# How long a stopping worker waits for its queued call records (the database may be down).
RECORD_FLUSH_SECONDS = 10.0

_open: set[HandOver] = set()
_hooked = False
_draining = False
_drain: asyncio.Task[None] | None = None


def draining() -> bool:
    """Whether this process has been told to stop and takes no new streams."""
    return _draining


def track(hand_over: HandOver) -> None:
    """Remember an open call and how to hand it over if the server stops."""
    _hook_server_shutdown()
    _open.add(hand_over)


def untrack(hand_over: HandOver) -> None:
    """Forget a call that has ended."""
    _open.discard(hand_over)


async def drain(seconds: float) -> None:
    """Take no new streams, give open calls `seconds` to end, then hand the rest over."""
    global _draining
    _draining = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    if _open:
        logger.warning(
            "told to stop: taking no new calls; %d open call(s) have %g s to finish",
            len(_open),
            seconds,
        )
    while _open and loop.time() < deadline:
        await asyncio.sleep(0.1)
    await hand_over_open_calls()
    await _write_records()


async def _write_records() -> None:
    """Give the call records still queued a moment to reach the database before the exit."""
    if not await recorder().flushed(RECORD_FLUSH_SECONDS):
        logger.error("stopping with %d call record(s) not written", recorder().waiting)


async def hand_over_open_calls() -> None:
    """Close every open call's stream so that Twilio starts it again on a live worker."""
    handovers = list(_open)
    if handovers:
        logger.warning("handing %d open call(s) over to another worker", len(handovers))
        await asyncio.gather(*(hand_over() for hand_over in handovers), return_exceptions=True)


def _hook_server_shutdown() -> None:
    # daphne's SIGTERM stops Twisted's reactor at once, and its own shutdown trigger cancels
    # every open stream: Twisted would hang up on every caller at each deploy. Ours drains first
    # and stops the reactor after; the trigger stays for a stop that came some other way.
    global _hooked
    if _hooked:
        return
    _hooked = True
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        return
    from twisted.internet import defer

    loop = asyncio.get_running_loop()

    def on_sigterm(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(_begin_drain, reactor)

    signal.signal(signal.SIGTERM, on_sigterm)

    async def on_shutdown_async() -> None:
        await hand_over_open_calls()
        await _write_records()

    def on_shutdown() -> defer.Deferred[None]:
        return defer.Deferred.fromFuture(asyncio.ensure_future(on_shutdown_async()))

    reactor.addSystemEventTrigger("before", "shutdown", on_shutdown)


def _begin_drain(reactor: _Reactor) -> None:
    """Start draining on the first SIGTERM; a second one hands the calls over at once."""
    global _drain
    if _drain is None:
        _stop_listening(reactor)
        _drain = asyncio.get_running_loop().create_task(drain(settings.DRAIN_SECONDS))
        _drain.add_done_callback(lambda _: _stop_reactor(reactor))
    else:
        logger.warning("told to stop again: handing open calls over now")
        asyncio.get_running_loop().create_task(hand_over_open_calls())


def _stop_listening(reactor: _Reactor) -> None:
    """Refuse new connections, so that the load balancer sends them to another worker."""
    from twisted.internet import tcp, unix

    for reader in reactor.getReaders():
        if isinstance(reader, tcp.Port | unix.Port):
            reader.stopListening()


def _stop_reactor(reactor: _Reactor) -> None:
    from twisted.internet.error import ReactorNotRunning

    with contextlib.suppress(ReactorNotRunning):
        reactor.stop()
