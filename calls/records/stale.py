"""Calls left "in progress" by a worker that died: finished by a periodic sweep on every worker,
by a command, and once per server process."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from calls.live import presence
from calls.records import queries
from calls.server.per_loop import PerLoop

logger = logging.getLogger(__name__)

# Each worker sweeps this often; a dead worker's calls are finished within about a minute of
# their presence keys expiring (presence.TTL_SECONDS after its last refresh).
SWEEP_SECONDS = 30.0
SWEEP_BATCH = 500
STOPPED_ERROR = "The server handling this call stopped before the call ended."

_swept = threading.Event()


def finish_stale_calls(*, older_than: float | None = None) -> int:
    """Fail calls in progress for longer than `older_than` seconds (STALE_CALL_SECONDS)."""
    seconds = settings.STALE_CALL_SECONDS if older_than is None else older_than
    count = queries.calls_finish_stale(older_than=timedelta(seconds=seconds))
    if count:
        logger.warning("finished %d call(s) left in progress by a stopped server", count)
    return count


def finish_abandoned_calls() -> int:
    """Fail calls in progress that no worker holds any more; return how many."""
    # Younger calls may not have announced themselves yet.
    started_before = timezone.now() - timedelta(seconds=presence.TTL_SECONDS)
    candidates = queries.calls_in_progress(started_before=started_before, limit=SWEEP_BATCH)
    if not candidates:
        return 0
    # Raises when presence cannot be read: then no call is taken for dead.
    abandoned = set(candidates) - presence.live_among(candidates)
    count = queries.calls_fail(call_sids=abandoned, error=STOPPED_ERROR) if abandoned else 0
    if count:
        logger.warning("finished %d call(s) whose worker stopped holding them", count)
    return count


def sweep_once() -> None:
    """Finish stale calls the first time this process serves Twilio; never raise."""
    # Only rows older than any call a live worker could still hold are touched, so several
    # workers sweeping at once agree.
    if _swept.is_set():
        return
    _swept.set()
    try:
        finish_stale_calls()
    except DatabaseError as exc:
        logger.warning("could not finish stale calls: %s", exc)


class _Sweeper:
    """This worker's periodic sweep of abandoned calls."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await database_sync_to_async(finish_abandoned_calls)()
            except Exception as exc:
                # The database or the shared cache is down: try again next round, quietly.
                if not failing:
                    logger.warning("sweeping abandoned calls failed: %s", exc)
                failing = True
            else:
                failing = False


_sweeper = PerLoop(_Sweeper)


def keep_sweeping() -> None:
    """Make sure this worker sweeps abandoned calls periodically."""
    _sweeper().start()
