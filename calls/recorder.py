"""Writes call records in batches, one writer per event loop, away from the first audio."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections

from calls import services
from calls.per_loop import PerLoop

logger = logging.getLogger(__name__)

# How long a batch gathers before it is written: a burst of calls sends its first audio, or
# its Deepgram request, before the database write takes the interpreter lock for milliseconds.
BATCH_DELAY_SECONDS = 0.02
# Under a steady stream of calls, a batch starts no sooner than this after the last one began:
# a transaction costs about what five rows cost, and calls arriving 100 a second made batches of
# two. What queues up during a write is still written right after it, so a burst's rows are
# all in before its first audio is due.
BATCH_INTERVAL_SECONDS = 0.1


class CallRecorder:
    """Queues call starts and ends and writes each batch in one transaction.

    Database writes share one thread; a burst of calls writing a row each would keep that
    thread, and the interpreter lock, busy just when their first audio is due. Batched, a
    burst of calls costs one transaction.
    """

    def __init__(self) -> None:
        self._started: list[tuple[services.CallStarted, asyncio.Future[None]]] = []
        self._ended: list[tuple[services.CallEnded, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._next_batch_at = 0.0

    def started(self, record: services.CallStarted) -> asyncio.Future[None]:
        """Queue a call start; the future resolves once it is written."""
        return self._queue(self._started, record)

    def ended(self, record: services.CallEnded) -> asyncio.Future[None]:
        """Queue a call end; the future resolves once it is written."""
        return self._queue(self._ended, record)

    def _queue(self, pending: list, record: object) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        pending.append((record, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write())
        return done

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(BATCH_DELAY_SECONDS, self._next_batch_at - loop.time()))
        # Whatever queues up while one batch is written goes into the next.
        while self._started or self._ended:
            self._next_batch_at = loop.time() + BATCH_INTERVAL_SECONDS
            started, self._started = self._started, []
            ended, self._ended = self._ended, []
            try:
                await _record(
                    started=[record for record, _ in started],
                    ended=[record for record, _ in ended],
                )
            except Exception as exc:
                logger.exception("writing %d call records failed", len(started) + len(ended))
                for _, done in started + ended:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in started + ended:
                    if not done.done():
                        done.set_result(None)


def _record_batch(*, started: list[services.CallStarted], ended: list[services.CallEnded]) -> None:
    """Write one batch on the database thread, over the connection earlier batches used."""
    # Channels' database_sync_to_async closes the thread's connection before and after every
    # call (CONN_MAX_AGE is 0), so each batch opened a new one: with SQLite that reopened the
    # file and checkpointed its log on close. The connection is kept, and replaced only once
    # it has failed and no longer answers, as close_old_connections would.
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.errors_occurred and not connection.is_usable():
        connection.close()
    services.calls_record(started=started, ended=ended)


# The one thread that database_sync_to_async also uses: writes stay in order.
_record = sync_to_async(_record_batch, thread_sensitive=True)

# This event loop's call recorder.
recorder = PerLoop(CallRecorder)
