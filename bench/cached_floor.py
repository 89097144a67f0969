"""The cached-greeting floor: a bare ASGI app that answers each `start` with audio it holds.

It does the least any server must do for a greeting already rendered: on a `start` it sends
the audio from memory as `media` messages, then a `mark`, with no framework, no cache look-up
and no call record. What it takes from `start` to first audio, the machine and daphne take.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from bench.floor import serve
from calls.twilio.protocol import GREETING_MARK, is_start, mark_message, media_message

# About as long as the benchmark's greeting (10 ms of audio per character), in voicebridge's
# pieces of at most one second.
AUDIO = b"\xff" * 9800
PIECE_BYTES = 8000

Send = Any


async def _greet(send: Send, stream_sid: str) -> None:
    for offset in range(0, len(AUDIO), PIECE_BYTES):
        audio = AUDIO[offset : offset + PIECE_BYTES]
        await send({"type": "websocket.send", "text": media_message(stream_sid, audio)})
    await send({"type": "websocket.send", "text": mark_message(stream_sid, GREETING_MARK)})


def _on_text(text: str, send: Send) -> Awaitable[None] | None:
    if is_start(text):
        return _greet(send, json.loads(text)["streamSid"])
    return None


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept a call, play the held audio after its `start`, drop every other frame."""
    await serve(scope, receive, send, _on_text)
