"""The first-audio floor: a bare ASGI app that relays Deepgram's first audio to waiting callers.

It does the least any server must do for an uncached greeting, with no framework: on a
`start` it asks Deepgram once per called number (raw HTTP/1.1 on kept-alive connections it
reuses) for every caller of that number waiting, with a text of its own each time, and sends
each of them the next audio chunk as a `media` message the moment it arrives. What it adds to
Deepgram's first byte, the machine and daphne add, not voicebridge.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from typing import Any
from urllib.parse import urlsplit

from bench.floor import serve
from calls.speech.voices import DEFAULT_VOICE
from calls.twilio.protocol import is_start, media_message

# The fake Deepgram this floor asks, set by the benchmark for the daphne it starts.
DEEPGRAM_URL_VARIABLE = "BENCH_RELAY_DEEPGRAM_URL"
TEXT_PREFIX = "relay floor"
_SPEAK = f"/v1/speak?model={DEFAULT_VOICE}&encoding=mulaw&sample_rate=8000&container=none"

Send = Any
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def text_for(number: str, serial: int) -> str:
    """The text this floor asks Deepgram for, distinct per called number and request."""
    return f"{TEXT_PREFIX} {number} {os.getpid()} {serial}"


class _Relay:
    """The callers waiting for first audio per called number, and the connections that fetch it."""

    def __init__(self) -> None:
        self.waiting: dict[str, list[tuple[Send, str]]] = {}
        self.fetches: dict[str, asyncio.Task[None]] = {}
        self.idle: list[Connection] = []
        self.serial = itertools.count(1)

    def join(self, send: Send, stream_sid: str, number: str) -> None:
        """Wait for the first audio; ask Deepgram unless this number's request is under way."""
        self.waiting.setdefault(number, []).append((send, stream_sid))
        if number not in self.fetches:
            self.fetches[number] = asyncio.get_running_loop().create_task(self._fetch(number))

    async def close(self) -> None:
        """Stop any request under way and close the connections."""
        fetches = list(self.fetches.values())
        for fetch in fetches:
            fetch.cancel()
        await asyncio.gather(*fetches, return_exceptions=True)
        for _, writer in self.idle:
            writer.close()
            await writer.wait_closed()
        self.idle.clear()

    async def _fetch(self, number: str) -> None:
        connection = self.idle.pop() if self.idle else None
        try:
            if connection is None:
                url = urlsplit(os.environ[DEEPGRAM_URL_VARIABLE])
                connection = await asyncio.open_connection(url.hostname, url.port)
            await self._ask(connection, number)
            self.idle.append(connection)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            # The callers hear nothing and the benchmark reports them; the next call reconnects.
            if connection is not None:
                connection[1].close()
            self.waiting.pop(number, None)
        finally:
            del self.fetches[number]

    async def _ask(self, connection: Connection, number: str) -> None:
        reader, writer = connection
        host = urlsplit(os.environ[DEEPGRAM_URL_VARIABLE]).netloc
        body = json.dumps({"text": text_for(number, next(self.serial))}).encode()
        writer.write(
            f"POST {_SPEAK} HTTP/1.1\r\nHost: {host}\r\n"
            "Authorization: Token benchmark-key\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise ValueError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunk = (await reader.readexactly(size + 2))[:-2]
            for send, stream_sid in self.waiting.pop(number, []):
                await send({"type": "websocket.send", "text": media_message(stream_sid, chunk)})
        await reader.readuntil(b"\r\n")


_relay = _Relay()


def _on_text(text: str, send: Send) -> None:
    if is_start(text):
        start = json.loads(text)
        number = start["start"].get("customParameters", {}).get("to", "")
        _relay.join(send, start["streamSid"], number)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer the webhook, relay the first audio after a call's `start`, drop other frames."""
    await serve(scope, receive, send, _on_text)
