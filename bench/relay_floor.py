"""The first-audio floor: a bare ASGI app that relays Deepgram's first audio to waiting callers.

It does the least any server must do for an uncached greeting, with no framework: on a
`start` it asks Deepgram once (raw HTTP/1.1 on one kept-alive connection) for every caller
waiting, and sends each of them the next audio chunk as a `media` message the moment it
arrives. What it adds to Deepgram's first byte, the machine and daphne add, not voicebridge.
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


class _Relay:
    """The callers waiting for one greeting's first audio, and the connection that fetches it."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Send, str]] = []
        self.fetch: asyncio.Task[None] | None = None
        self.connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.serial = itertools.count(1)

    def join(self, send: Send, stream_sid: str) -> None:
        """Wait for the first audio; ask Deepgram unless a request is already under way."""
        self.waiting.append((send, stream_sid))
        if self.fetch is None or self.fetch.done():
            self.fetch = asyncio.get_running_loop().create_task(self._fetch())

    async def close(self) -> None:
        """Stop any request under way and close the connection."""
        if self.fetch is not None:
            self.fetch.cancel()
            await asyncio.gather(self.fetch, return_exceptions=True)
        if self.connection is not None:
            self.connection[1].close()
            await self.connection[1].wait_closed()
            self.connection = None

    async def _fetch(self) -> None:
        try:
            await self._ask()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            # The callers hear nothing and the benchmark reports them; the next burst reconnects.
            if self.connection is not None:
                self.connection[1].close()
            self.connection = None
            self.waiting.clear()

    async def _ask(self) -> None:
        url = urlsplit(os.environ[DEEPGRAM_URL_VARIABLE])
        if self.connection is None:
            self.connection = await asyncio.open_connection(url.hostname, url.port)
        reader, writer = self.connection
        body = json.dumps({"text": f"{TEXT_PREFIX} {os.getpid()} {next(self.serial)}"}).encode()
        writer.write(
            f"POST {_SPEAK} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            "Authorization: Token benchmark-key\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise ValueError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunk = (await reader.readexactly(size + 2))[:-2]
            waiting, self.waiting = self.waiting, []
            for send, stream_sid in waiting:
                await send({"type": "websocket.send", "text": media_message(stream_sid, chunk)})
        await reader.readuntil(b"\r\n")


_relay = _Relay()


def _on_text(text: str, send: Send) -> None:
    if is_start(text):
        _relay.join(send, json.loads(text)["streamSid"])


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept a call, relay the first audio after its `start`, drop every other frame."""
    await serve(scope, receive, send, _on_text)
