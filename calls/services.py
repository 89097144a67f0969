"""The ORM reads and writes of a call; the only place calls touch the database."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from calls.models import Call, CallUtterance, Greeting, PhoneNumber

# What a caller hears when no greeting exists at all (the data migration creates this one).
FALLBACK_GREETING = Greeting(
    name="Default",
    say_text="This call may be monitored or recorded.",
    text="Hello, how are you today?",
    voice="aura-asteria-en",
    is_default=True,
)


def greeting_default() -> Greeting:
    """Return the default greeting, or the built-in one when none is marked."""
    greeting = Greeting.objects.filter(is_default=True).first()
    return greeting or Greeting.objects.order_by("pk").first() or FALLBACK_GREETING


def greeting_for_number(to: str) -> Greeting:
    """Return the greeting routed to the called number, else the default greeting."""
    route = PhoneNumber.objects.select_related("greeting").filter(number=to.strip()).first()
    return route.greeting if route else greeting_default()


def greeting_get(*, greeting_id: int | None) -> Greeting | None:
    """Return the greeting with this id, or None when there is none."""
    if greeting_id is None:
        return None
    return Greeting.objects.filter(pk=greeting_id).first()


def call_get(*, call_sid: str) -> Call | None:
    """Return the call with this CallSid and its greeting, or None."""
    return Call.objects.select_related("greeting").filter(call_sid=call_sid).first()


def call_start(
    *,
    call_sid: str,
    stream_sid: str,
    from_number: str = "",
    to_number: str = "",
    greeting_id: int | None = None,
) -> Call:
    """Record that a call's media stream started."""
    call, _ = Call.objects.update_or_create(
        call_sid=call_sid,
        defaults={
            "stream_sid": stream_sid,
            "from_number": from_number[:64],
            "to_number": to_number[:64],
            "greeting_id": greeting_id if greeting_id and _greeting_exists(greeting_id) else None,
            "status": Call.Status.IN_PROGRESS,
            "started_at": timezone.now(),
            "ended_at": None,
            "error": "",
        },
    )
    return call


def call_end(
    *,
    call_sid: str,
    status: Call.Status,
    error: str = "",
    first_audio_ms: float | None = None,
    from_cache: bool | None = None,
    interrupted: bool = False,
    playback_confirmed: bool = False,
) -> None:
    """Record how a call's media stream ended."""
    with transaction.atomic():
        Call.objects.filter(call_sid=call_sid).update(
            status=status,
            ended_at=timezone.now(),
            error=error[:2000],
            first_audio_ms=first_audio_ms,
            from_cache=from_cache,
            interrupted=interrupted,
            playback_confirmed=playback_confirmed,
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


def _greeting_exists(greeting_id: int) -> bool:
    return Greeting.objects.filter(pk=greeting_id).exists()
