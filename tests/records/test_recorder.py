"""Call records written in batches."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import DataError, OperationalError, connections
from django.db.backends.signals import connection_created
from django.utils import timezone

from calls.models import Call, Greeting
from calls.records import queries
from calls.records import recorder as recorder_module
from calls.records.queries import CallEnded, CallStarted
from calls.records.recorder import CallRecorder, RecordNotKept

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def started(call_sid: str, **fields: Any) -> CallStarted:
    return CallStarted(call_sid=call_sid, stream_sid="MZ1", started_at=timezone.now(), **fields)


async def test_a_burst_of_starts_and_ends_is_written() -> None:
    recorder = CallRecorder()
    greeting = await Greeting.objects.aget(is_default=True)
    starts = [
        recorder.started(started(f"CA{n}", from_number="+1", greeting_id=greeting.pk))
        for n in range(30)
    ]
    await asyncio.gather(*starts)
    assert await Call.objects.filter(status=Call.Status.IN_PROGRESS).acount() == 30
    ended_at = timezone.now()
    await asyncio.gather(
        *(
            recorder.ended(
                CallEnded(call_sid=f"CA{n}", status=Call.Status.COMPLETED, ended_at=ended_at)
            )
            for n in range(30)
        )
    )
    assert await Call.objects.filter(status=Call.Status.COMPLETED).acount() == 30
    call = await Call.objects.select_related("greeting").aget(call_sid="CA7")
    assert call.greeting == greeting
    assert call.from_number == "+1"


async def test_a_start_and_its_end_queued_together_keep_their_order() -> None:
    recorder = CallRecorder()
    first = recorder.started(started("CA1"))
    end = recorder.ended(
        CallEnded(
            call_sid="CA1",
            status=Call.Status.FAILED,
            ended_at=timezone.now(),
            error="Deepgram answered 401",
        )
    )
    await asyncio.gather(first, end)
    call = await Call.objects.aget(call_sid="CA1")
    assert (call.status, call.error) == (Call.Status.FAILED, "Deepgram answered 401")


async def test_batches_share_the_database_threads_connection() -> None:
    opened: list[object] = []

    def count(sender: object, connection: object, **kwargs: object) -> None:
        opened.append(connection)

    connection_created.connect(count)
    try:
        recorder = CallRecorder()
        for n in range(3):
            # One batch each: every start is written before the next is queued.
            await recorder.started(started(f"CA{n}"))
    finally:
        connection_created.disconnect(count)
    assert await Call.objects.acount() == 3
    # SQLite's in-memory test database ignores every close; the PostgreSQL pass tells.
    assert len(opened) <= 1


async def test_a_connection_that_failed_and_no_longer_answers_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = CallRecorder()
    await recorder.started(started("CA1"))
    closed: list[bool] = []

    def broken() -> None:
        connection = connections["default"]
        connection.errors_occurred = True
        monkeypatch.setattr(connection, "is_usable", lambda: False)
        close = connection.close

        def noted_close() -> None:
            closed.append(True)
            close()

        monkeypatch.setattr(connection, "close", noted_close)

    await sync_to_async(broken, thread_sensitive=True)()
    await recorder.started(started("CA2"))
    # The next batch goes out on a new connection (SQLite's in-memory test database ignores the
    # close, which would destroy it).
    assert closed == [True]
    assert await Call.objects.acount() == 2


async def test_a_steady_stream_of_calls_is_written_in_batches_of_several(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches: list[int] = []
    write = recorder_module._record

    async def counted(**records: list) -> None:
        batches.append(len(records["started"]))
        await write(**records)

    monkeypatch.setattr(recorder_module, "_record", counted)
    recorder = CallRecorder()
    written = []
    # 30 calls, one every 10 ms: with a batch at most every 100 ms, most batches hold several.
    for n in range(30):
        written.append(recorder.started(started(f"CA{n}")))
        await asyncio.sleep(0.01)
    await asyncio.gather(*written)
    assert sum(batches) == 30
    assert len(batches) <= 12, batches


async def test_rows_queued_during_a_write_are_written_right_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writing, go_on = asyncio.Event(), asyncio.Event()
    sleeps: list[float] = []
    write, sleep = recorder_module._record, asyncio.sleep

    async def held(**records: list) -> None:
        writing.set()
        await go_on.wait()
        await write(**records)

    async def noted(delay: float) -> None:
        sleeps.append(delay)
        await sleep(delay)

    monkeypatch.setattr(recorder_module, "_record", held)
    monkeypatch.setattr(recorder_module.asyncio, "sleep", noted)
    recorder = CallRecorder()
    first = recorder.started(started("CA1"))
    await writing.wait()
    second = recorder.started(started("CA2"))
    go_on.set()
    await asyncio.gather(first, second)
    # One wait, for the burst to gather; the row queued meanwhile did not wait for the interval.
    assert sleeps == [recorder_module.BATCH_DELAY_SECONDS]
    assert await Call.objects.acount() == 2


class Outage:
    """Makes the database refuse the next `failures` writes, as a stopped server would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.sleeps: list[float] = []
        write, sleep = queries.calls_record, asyncio.sleep

        def refused(**records: list) -> None:
            self.attempts += 1
            if self.attempts <= self.failures:
                raise OperationalError("connection refused\nIs the server running?")
            write(**records)

        async def noted(delay: float) -> None:
            # The backoff's waits are noted, not waited for.
            self.sleeps.append(delay)
            await sleep(0)

        monkeypatch.setattr(queries, "calls_record", refused)
        monkeypatch.setattr(recorder_module.asyncio, "sleep", noted)


async def test_records_the_database_refused_are_written_in_order_once_it_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    outage = Outage(monkeypatch, failures=8)
    recorder = CallRecorder()
    start = recorder.started(started("CA1"))
    while outage.attempts < 2:
        await asyncio.sleep(0)
    assert not start.done()
    end = recorder.ended(
        CallEnded(call_sid="CA1", status=Call.Status.COMPLETED, ended_at=timezone.now())
    )
    await asyncio.gather(start, end)
    assert (await Call.objects.aget(call_sid="CA1")).status == Call.Status.COMPLETED
    # From half a second, doubling, to 30 s at most.
    waits = [delay for delay in outage.sleeps if delay > recorder_module.BATCH_DELAY_SECONDS]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    messages = [r.getMessage() for r in caplog.records]
    assert (
        "retrying in 0.5 s" in messages[0] and "OperationalError: connection refused" in messages[0]
    )
    assert "after 8 failed attempts" in messages[-1]
    assert not any(r.exc_info for r in caplog.records)


async def test_a_record_whose_waiter_gave_up_is_still_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outage = Outage(monkeypatch, failures=3)
    recorder = CallRecorder()
    start = recorder.started(started("CA1"))
    while outage.attempts < 1:
        await asyncio.sleep(0)
    start.cancel()
    while outage.attempts < 4:
        await asyncio.sleep(0.01)
    assert await Call.objects.filter(call_sid="CA1").aexists()


async def test_records_past_the_limit_are_refused_with_one_loud_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(recorder_module, "KEEP_LIMIT", 3)
    outage = Outage(monkeypatch, failures=4)
    recorder = CallRecorder()
    kept = [recorder.started(started(f"CA{n}")) for n in range(3)]
    while outage.attempts < 1:
        await asyncio.sleep(0)
    refused = [recorder.started(started(f"CA{n}")) for n in range(3, 6)]
    assert all(isinstance(f.exception(), RecordNotKept) for f in refused)
    await asyncio.gather(*kept)
    assert await Call.objects.acount() == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2, errors
    assert "refusing new ones" in errors[0]
    assert errors[1].startswith("3 call records were refused")


async def test_a_batch_the_database_rejects_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[int] = []

    def rejected(**records: list) -> None:
        attempts.append(1)
        raise DataError("value too long")

    monkeypatch.setattr(queries, "calls_record", rejected)
    recorder = CallRecorder()
    with pytest.raises(DataError):
        await recorder.started(started("CA1"))
    assert len(attempts) == 1
