"""Writes call records in batches, one writer per event loop, away from the first audio."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections

from calls.records import queries
from calls.server.per_loop import PerLoop

logger = logging.getLogger(__name__)

# How long a batch gathers before it is written: a burst of calls sends its first audio, or
# its Deepgram request, before the database write takes the interpreter lock for milliseconds.
BATCH_DELAY_SECONDS = 0.02
# Under a steady stream of calls, a batch starts no sooner than this after the last one began:
# a transaction costs about what five rows cost, and calls arriving 100 a second made batches of
# two. What queues up during a write is still written right after it, so a burst's rows are
# all in before its first audio is due.
BATCH_INTERVAL_SECONDS = 0.1


# Records that cannot be written wait for the database, up to this many; past it, new ones are
# refused so a long outage cannot take the worker's memory.
KEEP_LIMIT = 10_000
# A batch the database refused is tried again after this long, doubling up to the last.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0

# The database did not answer, or dropped the connection: the same batch may be written later.
# Other errors (a refused value, a bug) would fail again and hold up every record behind them.
_RETRIED = (OperationalError, InterfaceError)


class RecordNotKept(Exception):
    """A record refused because KEEP_LIMIT records were already waiting for the database."""


class CallRecorder:
    """Queues call starts and ends and writes each batch in one transaction.

    Database writes share one thread; a burst of calls writing a row each would keep that
    thread, and the interpreter lock, busy just when their first audio is due. Batched, a
    burst of calls costs one transaction. A batch the database cannot take is kept, in order,
    and tried again with a backoff until it is written.
    """

    def __init__(self) -> None:
        self._started: list[tuple[queries.CallStarted, asyncio.Future[None]]] = []
        self._ended: list[tuple[queries.CallEnded, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._next_batch_at = 0.0
        self._kept = 0
        self._refused = 0
        self._attempts = 0
        self._failing_since = 0.0

    def started(self, record: queries.CallStarted) -> asyncio.Future[None]:
        """Queue a call start; the future resolves once it is written."""
        return self._queue(self._started, record)

    def ended(self, record: queries.CallEnded) -> asyncio.Future[None]:
        """Queue a call end; the future resolves once it is written."""
        return self._queue(self._ended, record)

    @property
    def waiting(self) -> int:
        """How many records are queued or kept, not yet written."""
        return self._kept

    async def flushed(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every queued record to be written; whether it was."""
        writer = self._writer
        if writer is None or writer.done():
            return True
        done, _ = await asyncio.wait([writer], timeout=timeout)
        return bool(done)

    def _queue(self, pending: list, record: object) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if self._kept >= KEEP_LIMIT:
            if not self._refused:
                logger.error(
                    "%d call records are waiting for the database: refusing new ones until "
                    "it answers; their calls will have no row or stay in progress",
                    self._kept,
                )
            self._refused += 1
            done.set_exception(RecordNotKept(f"{self._kept} call records already waiting"))
            # Nobody may wait for it; that is not worth a "never retrieved" warning.
            done.exception()
            return done
        self._kept += 1
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
            count = len(started) + len(ended)
            try:
                await _record(
                    started=[record for record, _ in started],
                    ended=[record for record, _ in ended],
                )
            except _RETRIED as exc:
                # Kept ahead of what queued meanwhile: a call's end is never written before
                # its start.
                self._started[:0] = started
                self._ended[:0] = ended
                await asyncio.sleep(self._note_failure(exc, count, loop.time()))
                continue
            except Exception as exc:
                logger.exception("writing %d call records failed; they are dropped", count)
                self._settle(started + ended, exc)
            else:
                self._note_written(count, loop.time())
                self._settle(started + ended, None)

    def _note_failure(self, exc: Exception, count: int, now: float) -> float:
        """Log a failed attempt in one line; return how long to wait before the next."""
        if not self._attempts:
            self._failing_since = now
        self._attempts += 1
        delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (self._attempts - 1))
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        logger.warning(
            "writing %d call records failed (%s: %s); kept, retrying in %.1f s",
            count,
            type(exc).__name__,
            reason,
            delay,
        )
        return delay

    def _note_written(self, count: int, now: float) -> None:
        if self._attempts:
            logger.warning(
                "wrote %d kept call records after %d failed attempts, %.1f s after the first",
                count,
                self._attempts,
                now - self._failing_since,
            )
        if self._refused:
            logger.error("%d call records were refused while the database was down", self._refused)
        self._attempts = 0
        self._refused = 0

    def _settle(self, batch: list, error: Exception | None) -> None:
        self._kept -= len(batch)
        for _, done in batch:
            if done.done():
                continue
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)


def _record_batch(*, started: list[queries.CallStarted], ended: list[queries.CallEnded]) -> None:
    """Write one batch on the database thread, over the connection earlier batches used."""
    # Channels' database_sync_to_async closes the thread's connection before and after every
    # call (CONN_MAX_AGE is 0), so each batch opened a new one: with SQLite that reopened the
    # file and checkpointed its log on close. The connection is kept, and replaced only once
    # it has failed and no longer answers, as close_old_connections would.
    connection = connections[DEFAULT_DB_ALIAS]
    failed = connection.connection is not None and connection.errors_occurred
    if failed and not connection.is_usable():
        connection.close()
    queries.calls_record(started=started, ended=ended)


# The one thread that database_sync_to_async also uses: writes stay in order.
_record = sync_to_async(_record_batch, thread_sensitive=True)

# This event loop's call recorder.
recorder = PerLoop(CallRecorder)
