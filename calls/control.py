"""Speak to, silence or end a live call from any worker: each command travels through the
channel layer to the consumer holding the call (its `call_say`, `call_clear`, `call_hangup`)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from calls import live
from calls.voices import VOICES

# Longer text is split into Deepgram-sized pieces; this only bounds one request's work.
MAX_SAY_CHARS = 10_000


class ControlError(Exception):
    """A call-control command that was not delivered."""


class CallNotLive(ControlError):
    """No worker holds a live call with this CallSid."""

    def __init__(self, call_sid: str) -> None:
        super().__init__(f"call {call_sid} is not live")
        self.call_sid = call_sid


class InvalidCommand(ControlError):
    """The command's arguments are unusable (empty text, unknown voice, ...)."""


async def asay(
    call_sid: str, text: str, voice: str | None = None, *, interrupt: bool = False
) -> None:
    """Speak text to the caller after what is queued (or at once, clearing it, on interrupt)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidCommand("text must be a non-empty string")
    if len(text) > MAX_SAY_CHARS:
        raise InvalidCommand(f"text is longer than {MAX_SAY_CHARS} characters")
    if voice is not None and (not isinstance(voice, str) or voice not in VOICES):
        raise InvalidCommand(f"unknown voice {voice!r}")
    if not isinstance(interrupt, bool):
        raise InvalidCommand("interrupt must be true or false")
    await _send(
        call_sid, {"type": "call.say", "text": text.strip(), "voice": voice, "interrupt": interrupt}
    )


async def aclear(call_sid: str) -> None:
    """Stop the speech playing now and drop what is queued."""
    await _send(call_sid, {"type": "call.clear"})


async def ahangup(call_sid: str) -> None:
    """End the call once the queued speech has played."""
    await _send(call_sid, {"type": "call.hangup"})


def say(call_sid: str, text: str, voice: str | None = None, *, interrupt: bool = False) -> None:
    """Synchronous `asay`, for views, the admin and scripts."""
    async_to_sync(asay)(call_sid, text, voice, interrupt=interrupt)


def clear(call_sid: str) -> None:
    """Synchronous `aclear`."""
    async_to_sync(aclear)(call_sid)


def hangup(call_sid: str) -> None:
    """Synchronous `ahangup`."""
    async_to_sync(ahangup)(call_sid)


async def _send(call_sid: str, message: dict[str, Any]) -> None:
    # A group send to nobody succeeds silently: the presence key is what tells "live" apart.
    if not await live.is_live(call_sid):
        raise CallNotLive(call_sid)
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is configured in settings"
    await layer.group_send(live.group_name(call_sid), message)
