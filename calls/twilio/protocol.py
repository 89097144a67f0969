"""Twilio Media Streams protocol: typed inbound events and the outbound messages; no I/O."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Twilio never documents a frame size; its frames are ~300 bytes, so this is generous.
MAX_FRAME_CHARS = 64 * 1024
# The marks we send after speech, so Twilio tells us when it has played.
GREETING_MARK = "greeting-end"
SAY_MARK_PREFIX = "say-"

_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Twilio serialises "event" first; a frame shaped otherwise still parses, only more slowly.
_MEDIA_PREFIX = re.compile(r'\s*\{\s*"event"\s*:\s*"media"')
_START_PREFIX = re.compile(r'\s*\{\s*"event"\s*:\s*"start"')


class ProtocolError(ValueError):
    """A frame that is not a valid Twilio Media Streams message."""

    # The event the frame named, when it named a known one ("start" with a bad body, say).
    event: str = ""


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    stream_sid: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str


Event = Connected | Start | Media | Dtmf | Mark | Stop


def is_media(text: str) -> bool:
    """Tell cheaply whether a frame is inbound caller audio, without parsing it."""
    return _MEDIA_PREFIX.match(text) is not None


def is_start(text: str) -> bool:
    """Tell cheaply whether a frame is the stream's `start`, without parsing it."""
    return _START_PREFIX.match(text) is not None


def parse_event(text: str) -> Event:
    """Parse one text frame from Twilio into an event, or raise ProtocolError."""
    if len(text) > MAX_FRAME_CHARS:
        raise ProtocolError(f"frame of {len(text)} characters is over {MAX_FRAME_CHARS}")
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("frame is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    event = message.get("event")
    try:
        return _parse_known(event, message)
    except ProtocolError as exc:
        exc.event = event if isinstance(event, str) and event in _EVENTS else ""
        raise


_EVENTS = frozenset({"connected", "start", "media", "dtmf", "mark", "stop"})


def _parse_known(event: object, message: dict[str, Any]) -> Event:
    if event == "connected":
        return Connected(protocol=_text(message, "protocol", required=False))
    if event == "start":
        return _parse_start(message)
    if event == "media":
        body = _object(message, "media")
        return Media(stream_sid=_sid(message), payload=_base64(_text(body, "payload")))
    if event == "dtmf":
        digit = _text(_object(message, "dtmf"), "digit")
        if len(digit) != 1 or digit not in "0123456789*#ABCDw":
            raise ProtocolError(f"dtmf digit {digit!r} is not a key")
        return Dtmf(stream_sid=_sid(message), digit=digit)
    if event == "mark":
        return Mark(stream_sid=_sid(message), name=_text(_object(message, "mark"), "name"))
    if event == "stop":
        return Stop(stream_sid=_sid(message))
    if isinstance(event, str):
        raise ProtocolError(f"unknown event {event[:40]!r}")
    raise ProtocolError("frame has no event name")


def media_message(stream_sid: str, audio: bytes) -> str:
    """Build a `media` message that plays raw 8 kHz mu-law audio into the call."""
    # stream_sid was checked against _SID at parse time and base64 needs no escaping.
    payload = base64.b64encode(audio).decode("ascii")
    return f'{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"{payload}"}}}}'


def mark_message(stream_sid: str, name: str) -> str:
    """Build a `mark` message that Twilio echoes once the audio before it has played."""
    return json.dumps(
        {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}, separators=(",", ":")
    )


def clear_message(stream_sid: str) -> str:
    """Build a `clear` message that empties Twilio's buffer of unplayed audio."""
    return json.dumps({"event": "clear", "streamSid": stream_sid}, separators=(",", ":"))


def _parse_start(message: dict[str, Any]) -> Start:
    body = _object(message, "start")
    params = body.get("customParameters", {})
    if params is None:
        params = {}
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int | float) for k, v in params.items()
    ):
        raise ProtocolError("start.customParameters is not an object of strings")
    stream_sid = _text(body, "streamSid")
    if not _SID.fullmatch(stream_sid):
        raise ProtocolError("start.streamSid is not a Twilio SID")
    call_sid = _text(body, "callSid")
    if not _SID.fullmatch(call_sid):
        raise ProtocolError("start.callSid is not a Twilio SID")
    return Start(
        stream_sid=stream_sid,
        call_sid=call_sid,
        account_sid=_text(body, "accountSid", required=False),
        custom_parameters={k: str(v) for k, v in params.items()},
    )


def _object(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{key} is missing or not an object")
    return value


def _text(message: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = message.get(key)
    if isinstance(value, str):
        return value
    if value is None and not required:
        return ""
    raise ProtocolError(f"{key} is missing or not a string")


def _sid(message: dict[str, Any]) -> str:
    return _text(message, "streamSid", required=False)


def _base64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("media.payload is not base64") from None
