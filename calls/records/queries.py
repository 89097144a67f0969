"""The ORM reads and writes of a call; the only place calls touch the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from calls.models import Call, CallUtterance, Greeting
from calls.records.compiled import CompiledFirst
from calls.speech.voices import DEFAULT_VOICE

# What a caller hears when no greeting exists at all (the data migration creates this one).
FALLBACK_GREETING = Greeting(
    name="Default",
    say_text="This call may be monitored or recorded.",
    text="Hello, how are you today?",
    voice=DEFAULT_VOICE,
    is_default=True,
)


# Every webhook runs these two.
_marked_default = CompiledFirst(Greeting, lambda _: Greeting.objects.filter(is_default=True))
_routed = CompiledFirst(Greeting, lambda number: Greeting.objects.filter(numbers__number=number))


def greeting_default() -> Greeting:
    """Return the default greeting, or the built-in one when none is marked."""
    greeting = _marked_default("")
    return greeting or Greeting.objects.order_by("pk").first() or FALLBACK_GREETING


def greeting_for_number(to: str) -> Greeting:
    """Return the greeting routed to the called number, else the default greeting."""
    return _routed(to.strip()) or greeting_default()


def greeting_get(*, greeting_id: int | None) -> Greeting | None:
    """Return the greeting with this id, or None when there is none."""
    if greeting_id is None:
        return None
    return Greeting.objects.filter(pk=greeting_id).first()


def call_get(*, call_sid: str) -> Call | None:
    """Return the call with this CallSid and its greeting, or None."""
    return Call.objects.select_related("greeting").filter(call_sid=call_sid).first()


@dataclass(frozen=True)
class CallStarted:
    """A call's media stream started."""

    call_sid: str
    stream_sid: str
    started_at: datetime
    from_number: str = ""
    to_number: str = ""
    greeting_id: int | None = None


@dataclass(frozen=True)
class CallEnded:
    """A call's media stream ended, and how."""

    call_sid: str
    status: Call.Status
    ended_at: datetime
    error: str = ""
    first_audio_ms: float | None = None
    from_cache: bool | None = None
    interrupted: bool = False
    playback_confirmed: bool = False
    # When set, the end applies only while this is still the call's latest stream.
    stream_sid: str = ""


def calls_record(*, started: Sequence[CallStarted], ended: Sequence[CallEnded]) -> None:
    """Write a batch of call starts, then call ends, in one transaction."""
    with transaction.atomic():
        if started:
            _record_starts(started)
        for e in ended:
            _record_end(e)


def _record_starts(started: Sequence[CallStarted]) -> None:
    """Insert the calls that have no row; count the others' starts as further streams."""
    call_sids = {s.call_sid for s in started}
    known = set(
        Call.objects.select_for_update()
        .filter(call_sid__in=call_sids)
        .values_list("call_sid", flat=True)
    )
    first: dict[str, CallStarted] = {}
    further: list[CallStarted] = []
    for s in started:
        if s.call_sid in known or s.call_sid in first:
            further.append(s)
        else:
            first[s.call_sid] = s
    greeting_ids = {s.greeting_id for s in first.values() if s.greeting_id is not None}
    existing = set(Greeting.objects.filter(pk__in=greeting_ids).values_list("pk", flat=True))
    Call.objects.bulk_create(
        [
            Call(
                call_sid=s.call_sid,
                stream_sid=s.stream_sid,
                from_number=s.from_number[:64],
                to_number=s.to_number[:64],
                greeting_id=s.greeting_id if s.greeting_id in existing else None,
                status=Call.Status.IN_PROGRESS,
                started_at=s.started_at,
            )
            for s in first.values()
        ],
        # Another worker's first stream of the same call, written a moment before.
        ignore_conflicts=True,
    )
    for s in further:
        # A call that has ended is never started again (a replayed webhook and start would
        # rewrite it); a start written twice, its batch retried, is one stream.
        Call.objects.filter(call_sid=s.call_sid, status=Call.Status.IN_PROGRESS).exclude(
            stream_sid=s.stream_sid
        ).update(stream_sid=s.stream_sid, streams=F("streams") + 1)


def _record_end(e: CallEnded) -> None:
    """Finish the call's row if it is still in progress (and on the stream that ended)."""
    calls = Call.objects.filter(call_sid=e.call_sid, status=Call.Status.IN_PROGRESS)
    if e.stream_sid:
        # The end of a stream the call has moved on from leaves its resumed stream live.
        calls = calls.filter(stream_sid=e.stream_sid)
    calls.update(
        status=e.status,
        ended_at=e.ended_at,
        error=e.error[:2000],
        first_audio_ms=e.first_audio_ms,
        from_cache=e.from_cache,
        interrupted=e.interrupted,
        playback_confirmed=e.playback_confirmed,
    )


def calls_finish_stale(*, older_than: timedelta) -> int:
    """Fail every call still in progress that started before `older_than` ago; return how many."""
    return Call.objects.filter(
        status=Call.Status.IN_PROGRESS, started_at__lt=timezone.now() - older_than
    ).update(
        status=Call.Status.FAILED,
        ended_at=timezone.now(),
        error="The server handling this call stopped before the call ended.",
    )


def utterance_record(
    *, call_sid: str, text: str, voice: str, mark: str, interrupt: bool = False
) -> CallUtterance | None:
    """Record something said into a live call; None when the call has no row."""
    call = Call.objects.filter(call_sid=call_sid).first()
    if call is None:
        return None
    return CallUtterance.objects.create(
        call=call, text=text, voice=voice, mark=mark[:32], interrupt=interrupt
    )


def utterances_played(*, call_sid: str, marks: list[str]) -> None:
    """Mark the call's utterances whose marks Twilio echoed after playing them."""
    if marks:
        CallUtterance.objects.filter(call__call_sid=call_sid, mark__in=marks).update(played=True)


def calls_in_progress(*, started_before: datetime, limit: int) -> list[str]:
    """Return the CallSids of calls still in progress that started before `started_before`."""
    return list(
        Call.objects.filter(status=Call.Status.IN_PROGRESS, started_at__lt=started_before)
        .order_by("started_at")
        .values_list("call_sid", flat=True)[:limit]
    )


def calls_fail(*, call_sids: set[str], error: str) -> int:
    """Finish these calls, if still in progress, as failed with `error`; return how many."""
    return Call.objects.filter(call_sid__in=call_sids, status=Call.Status.IN_PROGRESS).update(
        status=Call.Status.FAILED, ended_at=timezone.now(), error=error
    )
