"""Deepgram Aura text-to-speech over a shared httpx connection pool per event loop; streams mu-law.

Requests go straight to httpx's transport, its connection pool. The client layer on top handles
cookies, redirects and auth, which Deepgram does not use; under the benchmark its bookkeeping
added about 0.4 ms between Deepgram's first byte and our first chunk.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

import anyio
import httpx
from django.conf import settings

from calls.server.per_loop import PerLoop

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000
# Query string that makes Aura answer raw telephone audio with no WAV header (no click).
AUDIO_FORMAT = {"encoding": "mulaw", "sample_rate": "8000", "container": "none"}
# httpx's timeouts per connect, read and write; the first audio byte has its own deadline.
TIMEOUT = httpx.Timeout(10.0, connect=3.0).as_dict()
USER_AGENT = "voicebridge"


class TTSError(Exception):
    """Deepgram could not synthesize speech; carries what its support desk needs."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str = "",
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id
        self.retryable = retryable

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.request_id:
            parts.append(f"dg-request-id={self.request_id}")
        return " ".join(parts)


@dataclass(frozen=True)
class DeepgramTTS:
    """A Deepgram Aura client bound to a key, a base URL and a shared httpx transport."""

    api_key: str
    base_url: str
    transport: httpx.AsyncBaseTransport

    first_byte_timeout: float = 10.0
    # Seconds from the first attempt within which retries may start; 0 means no retries.
    retry_deadline: float = 0.0

    async def stream(self, voice: str, text: str) -> AsyncGenerator[bytes, None]:
        """Yield raw 8 kHz mu-law audio for `text`, retrying failures before the first byte."""
        if not self.api_key:
            raise TTSError("DEEPGRAM_API_KEY is not set", status=None)
        # A burst of calls waits here for a slot instead of collecting 429s from Deepgram.
        async with _request_slots():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.retry_deadline
            attempt = 0
            # The latest failure Deepgram answered, and the latest failure of any kind.
            answered: TTSError | None = None
            failed: TTSError | None = None
            while True:
                started = False
                timeout_at = loop.time() + self.first_byte_timeout
                if attempt:
                    timeout_at = min(timeout_at, deadline)
                try:
                    async with aclosing(self._attempt(voice, text, timeout_at)) as chunks:
                        async for chunk in chunks:
                            started = True
                            yield chunk
                    return
                except TTSError as exc:
                    # Once audio reached the caller a retry would make them hear words twice.
                    if started or not exc.retryable:
                        raise
                    # A retry that our deadline cut short tells nothing about Deepgram.
                    if not (attempt and timeout_at == deadline and loop.time() >= deadline):
                        failed = exc
                        answered = exc if exc.status is not None else answered
                    delay = _backoff(attempt)
                    if loop.time() + delay >= deadline:
                        # Deepgram's own answer says more than a connection error, and either
                        # says more than our deadline cutting a retry short.
                        reported = answered or failed
                        if reported is not None and reported is not exc:
                            raise reported from exc
                        raise
                    logger.info("deepgram attempt %d failed, retrying: %s", attempt + 1, exc)
                    await asyncio.sleep(delay)
                    attempt += 1

    async def _attempt(
        self, voice: str, text: str, first_byte_by: float
    ) -> AsyncGenerator[bytes, None]:
        """Make one Deepgram request whose first audio byte must arrive by `first_byte_by`."""
        request = httpx.Request(
            "POST",
            _speak_url(self.base_url, voice),
            headers={
                "Authorization": f"Token {self.api_key}",
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            },
            content=json.dumps({"text": text}).encode(),
            extensions={"timeout": TIMEOUT},
        )
        try:
            async with asyncio.timeout_at(first_byte_by) as first_byte:
                response = await self.transport.handle_async_request(request)
                try:
                    request_id = response.headers.get("dg-request-id", "")
                    if response.status_code != 200:
                        raise await _error_from(response, request_id)
                    logger.debug("deepgram stream opened dg-request-id=%s", request_id)
                    async for chunk in response.aiter_bytes():
                        if chunk:
                            # Audio is flowing: from here httpx's read timeout guards each read.
                            first_byte.reschedule(None)
                            yield chunk
                finally:
                    await response.aclose()
        except TimeoutError:
            raise TTSError(
                "Deepgram sent no audio in time (first-byte timeout)", retryable=True
            ) from None
        except httpx.TimeoutException as exc:
            raise TTSError(f"Deepgram timed out ({type(exc).__name__})", retryable=True) from exc
        except httpx.TransportError as exc:
            raise TTSError(
                f"Deepgram connection failed ({type(exc).__name__}: {exc})", retryable=True
            ) from exc


@functools.lru_cache(maxsize=64)
def _speak_url(base_url: str, voice: str) -> httpx.URL:
    """The speak URL for a voice, parsed once: httpx's URL parsing is a good part of a request."""
    return httpx.URL(f"{base_url}/v1/speak", params={"model": voice, **AUDIO_FORMAT})


async def _error_from(response: httpx.Response, request_id: str) -> TTSError:
    """Translate a non-200 Deepgram answer into a TTSError; its body is never audio."""
    body = await response.aread()
    message = ""
    try:
        data = json.loads(body[:4096])
        if isinstance(data, dict):
            message = str(data.get("err_msg") or data.get("message") or data.get("err_code") or "")
            request_id = request_id or str(data.get("request_id") or "")
    except (ValueError, UnicodeDecodeError):
        message = body[:200].decode("utf-8", "replace")
    status = response.status_code
    return TTSError(
        f"Deepgram answered {status}: {message or response.reason_phrase}",
        status=status,
        request_id=request_id,
        retryable=status in (408, 429) or status >= 500,
    )


def _new_transport() -> httpx.AsyncHTTPTransport:
    # httpx drops idle connections after 5 s by default; calls arrive further apart.
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(
            max_connections=200, max_keepalive_connections=50, keepalive_expiry=300.0
        ),
    )


# This event loop's one connection pool, so calls reuse warm Deepgram connections.
shared_transport = PerLoop(_new_transport)


async def warm_up() -> None:
    """Build this loop's connection pool and load what its first connection needs."""
    # Both cost the first uncached call after a start otherwise: the pool's TLS context about
    # 45 ms, and anyio's event-loop backend, which httpcore connects through, about 30 ms.
    shared_transport()
    await anyio.sleep(0)


async def close_connections() -> None:
    """Close this event loop's Deepgram connections (tests and shutdown)."""
    transport = shared_transport.forget()
    if transport is not None:
        await transport.aclose()


# This event loop's cap on concurrent Deepgram requests (DEEPGRAM_MAX_CONCURRENCY).
_request_slots = PerLoop(lambda: asyncio.Semaphore(max(1, settings.DEEPGRAM_MAX_CONCURRENCY)))


def _backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt` + 1: exponential, with jitter so callers spread."""
    return min(2.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)


def get_tts() -> DeepgramTTS:
    """Build the Deepgram client from current settings and this loop's connection pool."""
    return DeepgramTTS(
        api_key=settings.DEEPGRAM_API_KEY,
        base_url=settings.DEEPGRAM_API_URL,
        transport=shared_transport(),
        first_byte_timeout=settings.DEEPGRAM_FIRST_BYTE_TIMEOUT,
        retry_deadline=settings.DEEPGRAM_RETRY_DEADLINE,
    )
