"""Speak to, silence or end a live call from any worker: each command travels through the
channel layer straight to the consumer holding the call, which answers whether it took it."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer

from calls.live import presence
from calls.server.cache_calls import UNREACHABLE, CacheUnavailable
from calls.speech.voices import VOICES

# Longer text is split into Deepgram-sized pieces; this only bounds one request's work.
MAX_SAY_CHARS = 10_000
# What one call may have queued and not yet played; Twilio buffers about ten minutes of audio.
MAX_QUEUED_SAYS = 20
MAX_QUEUED_CHARS = 10_000
# How long a command waits for the consumer's answer.
REPLY_SECONDS = 3.0
REPLY_TYPE = "call.reply"

Verdict = Literal["accepted", "ended", "busy", "invalid"]


class ControlError(Exception):
    """A call-control command that was not carried out."""


class CallNotLive(ControlError):
    """No worker holds a live call with this CallSid."""

    def __init__(self, call_sid: str) -> None:
        super().__init__(f"call {call_sid} is not live")
        self.call_sid = call_sid


class InvalidCommand(ControlError):
    """The command's arguments are unusable (empty text, unknown voice, ...)."""


class CallEnded(ControlError):
    """The call is hanging up or has ended: it takes no more commands."""


class TooMuchQueued(ControlError):
    """The call already has as much speech queued as it may."""


class ControlUnavailable(ControlError):
    """The command could not be delivered now (Redis down, the call's inbox full or silent)."""


@dataclass(frozen=True)
class Reply:
    """A consumer's answer to one command."""

    verdict: Verdict
    error: str = ""

    def message(self) -> dict[str, Any]:
        """The channel-layer message carrying this reply."""
        return {"type": REPLY_TYPE, "verdict": self.verdict, "error": self.error}


class SpeechBudget:
    """What one call has queued to say and not yet heard, bounded in utterances and characters."""

    def __init__(self) -> None:
        self._queued: deque[tuple[int, int]] = deque()

    def refusal(self, text: str) -> str | None:
        """Why `text` may not be queued now, or None."""
        chars = sum(size for _, size in self._queued)
        if len(self._queued) >= MAX_QUEUED_SAYS:
            return f"{MAX_QUEUED_SAYS} utterances are already queued for this call"
        if self._queued and chars + len(text) > MAX_QUEUED_CHARS:
            return (
                f"{chars} characters are already queued for this call (at most {MAX_QUEUED_CHARS})"
            )
        return None

    def add(self, number: int, text: str) -> None:
        """Count utterance `number` (numbers rise) as queued."""
        self._queued.append((number, len(text)))

    def played_through(self, number: int) -> None:
        """Forget every utterance up to `number`: the call plays them in order."""
        while self._queued and self._queued[0][0] <= number:
            self._queued.popleft()

    def clear(self) -> None:
        """Forget everything queued: it was dropped."""
        self._queued.clear()


def check_text(text: object) -> str:
    """Return the text to speak, or raise InvalidCommand saying why it cannot be."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidCommand("text must be a non-empty string")
    if len(text) > MAX_SAY_CHARS:
        raise InvalidCommand(f"text is longer than {MAX_SAY_CHARS} characters")
    # The call's record keeps what was said: PostgreSQL refuses NUL, UTF-8 lone surrogates.
    if "\x00" in text:
        raise InvalidCommand("text must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidCommand("text must not contain lone surrogates") from None
    return text.strip()


async def asay(
    call_sid: str, text: str, voice: str | None = None, *, interrupt: bool = False
) -> None:
    """Speak text to the caller after what is queued (or at once, clearing it, on interrupt)."""
    text = check_text(text)
    if voice is not None and (not isinstance(voice, str) or voice not in VOICES):
        raise InvalidCommand(f"unknown voice {voice!r}")
    if not isinstance(interrupt, bool):
        raise InvalidCommand("interrupt must be true or false")
    await _send(
        call_sid, {"type": "call.say", "text": text, "voice": voice, "interrupt": interrupt}
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


def expired(message: dict[str, Any]) -> bool:
    """Whether the command's sender may have stopped waiting for it (and told its caller 503)."""
    sent_at = message.get("sent_at")
    # Half the sender's wait: the other half is for the reply to travel back.
    return isinstance(sent_at, float) and time.time() - sent_at > REPLY_SECONDS / 2


async def reply(reply_to: str | None, answer: Reply) -> None:
    """Answer a command's sender (the consumer's side); a sender gone or unreachable is ignored."""
    if not reply_to:
        return
    try:
        await _layer().send(reply_to, answer.message())
    except (ChannelFull, *UNREACHABLE):
        pass


async def _send(call_sid: str, message: dict[str, Any]) -> None:
    where = await _whereabouts(call_sid)
    if where.ended:
        raise CallEnded(f"call {call_sid} has ended")
    if where.channel is None:
        raise CallNotLive(call_sid)
    layer = _layer()
    try:
        # The layer's default prefix: channels_redis reads one process-wide queue per prefix,
        # under one lock, and a reply under another prefix waits behind the consumers' reads.
        reply_to = await layer.new_channel()
        await layer.send(where.channel, {**message, "reply_to": reply_to, "sent_at": time.time()})
        async with asyncio.timeout(REPLY_SECONDS):
            answer = await layer.receive(reply_to)
    except ChannelFull:
        raise ControlUnavailable(f"call {call_sid} has too many commands waiting") from None
    except TimeoutError:
        # The call may have ended as the command left.
        if (await _whereabouts(call_sid)).channel is None:
            raise CallEnded(f"call {call_sid} has ended") from None
        raise ControlUnavailable(
            f"call {call_sid} did not confirm the command in time (it may yet be carried out)"
        ) from None
    except UNREACHABLE:
        raise ControlUnavailable("the channel layer (Redis) is unreachable") from None
    _raise_for(Reply(answer.get("verdict", "invalid"), answer.get("error", "")), call_sid)


def _raise_for(answer: Reply, call_sid: str) -> None:
    if answer.verdict == "accepted":
        return
    if answer.verdict == "ended":
        raise CallEnded(answer.error or f"call {call_sid} is hanging up or has ended")
    if answer.verdict == "busy":
        raise TooMuchQueued(answer.error)
    raise InvalidCommand(answer.error or "the call refused the command")


async def _whereabouts(call_sid: str) -> presence.Whereabouts:
    try:
        return await presence.whereabouts(call_sid)
    except CacheUnavailable as exc:
        raise ControlUnavailable(f"{exc}: live calls cannot be found") from None


def _layer() -> BaseChannelLayer:
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is configured in settings"
    return layer
