"""What a batch of call starts and ends does to the calls' rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from calls.models import Call, Greeting
from calls.records.queries import CallEnded, CallStarted, calls_record

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0)


def start(
    call_sid: str = "CA1", stream_sid: str = "MZ1", at: datetime = T0, **fields: Any
) -> CallStarted:
    return CallStarted(call_sid=call_sid, stream_sid=stream_sid, started_at=at, **fields)


def end(
    call_sid: str = "CA1", status: Call.Status = Call.Status.COMPLETED, **fields: Any
) -> CallEnded:
    return CallEnded(
        call_sid=call_sid, status=status, ended_at=T0 + timedelta(seconds=30), **fields
    )


def test_a_start_then_its_end_in_one_batch() -> None:
    greeting = Greeting.objects.get(is_default=True)
    calls_record(
        started=[start(from_number="+1555", to_number="+1666", greeting_id=greeting.pk)],
        ended=[end(error="x", first_audio_ms=12.5, playback_confirmed=True)],
    )
    call = Call.objects.get()
    assert (call.status, call.error, call.first_audio_ms, call.playback_confirmed) == (
        Call.Status.COMPLETED,
        "x",
        12.5,
        True,
    )
    assert (call.from_number, call.to_number, call.greeting, call.streams) == (
        "+1555",
        "+1666",
        greeting,
        1,
    )


def test_a_finished_call_is_never_started_again() -> None:
    calls_record(started=[start()], ended=[end()])
    # A replayed webhook and start for the same CallSid, a minute later.
    calls_record(started=[start(stream_sid="MZ9", at=T0 + timedelta(minutes=1))], ended=[])
    call = Call.objects.get()
    assert (call.status, call.stream_sid, call.started_at, call.streams) == (
        Call.Status.COMPLETED,
        "MZ1",
        T0,
        1,
    )


def test_a_resumed_stream_keeps_the_calls_start_and_is_counted() -> None:
    greeting = Greeting.objects.get(is_default=True)
    calls_record(
        started=[start(from_number="+1555", to_number="+1666", greeting_id=greeting.pk)],
        ended=[],
    )
    later = start(stream_sid="MZ2", at=T0 + timedelta(minutes=2), from_number="", to_number="")
    calls_record(started=[later], ended=[])
    call = Call.objects.get()
    assert (call.status, call.stream_sid, call.streams, call.started_at) == (
        Call.Status.IN_PROGRESS,
        "MZ2",
        2,
        T0,
    )
    assert (call.from_number, call.to_number, call.greeting) == ("+1555", "+1666", greeting)


def test_two_streams_of_one_call_in_one_batch_make_one_row() -> None:
    calls_record(started=[start(), start(stream_sid="MZ2")], ended=[])
    call = Call.objects.get()
    assert (call.stream_sid, call.streams) == ("MZ2", 2)


def test_a_start_written_twice_is_one_stream() -> None:
    calls_record(started=[start()], ended=[])
    calls_record(started=[start()], ended=[])
    assert Call.objects.get().streams == 1


def test_an_end_applies_only_to_a_call_in_progress() -> None:
    calls_record(started=[start()], ended=[end(status=Call.Status.INTERRUPTED)])
    calls_record(started=[], ended=[end(status=Call.Status.FAILED, error="late")])
    call = Call.objects.get()
    assert (call.status, call.error) == (Call.Status.INTERRUPTED, "")


def test_the_end_of_a_stream_the_call_moved_on_from_leaves_it_live() -> None:
    calls_record(started=[start(), start(stream_sid="MZ2")], ended=[end(stream_sid="MZ1")])
    assert Call.objects.get().status == Call.Status.IN_PROGRESS
    calls_record(started=[], ended=[end(stream_sid="MZ2")])
    assert Call.objects.get().status == Call.Status.COMPLETED


def test_an_end_without_a_row_writes_nothing() -> None:
    calls_record(started=[], ended=[end()])
    assert not Call.objects.exists()


def test_a_greeting_deleted_meanwhile_is_recorded_as_none() -> None:
    calls_record(started=[start(greeting_id=987654)], ended=[])
    assert Call.objects.get().greeting_id is None
