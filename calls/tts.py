"""Deepgram Aura text-to-speech over a shared httpx client per event loop; streams mu-law."""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from django.conf import settings

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000
# Query string that makes Aura answer raw telephone audio with no WAV header (no click).
AUDIO_FORMAT = {"encoding": "mulaw", "sample_rate": "8000", "container": "none"}


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
    """A Deepgram Aura client bound to a key, a base URL and a shared httpx client."""

    api_key: str
    base_url: str
    client: httpx.AsyncClient

    async def stream(self, voice: str, text: str) -> AsyncIterator[bytes]:
        """Yield raw 8 kHz mu-law audio for `text` as Deepgram streams it."""
        if not self.api_key:
            raise TTSError("DEEPGRAM_API_KEY is not set", status=None)
        params = {"model": voice, **AUDIO_FORMAT}
        headers = {"Authorization": f"Token {self.api_key}"}
        try:
            async with self.client.stream(
                "POST",
                f"{self.base_url}/v1/speak",
                params=params,
                headers=headers,
                json={"text": text},
            ) as response:
                request_id = response.headers.get("dg-request-id", "")
                if response.status_code != 200:
                    raise await _error_from(response, request_id)
                logger.debug("deepgram stream opened dg-request-id=%s", request_id)
                async for chunk in response.aiter_bytes():
                    if chunk:
                        yield chunk
        except httpx.TimeoutException as exc:
            raise TTSError(f"Deepgram timed out ({type(exc).__name__})", retryable=True) from exc
        except httpx.TransportError as exc:
            raise TTSError(
                f"Deepgram connection failed ({type(exc).__name__}: {exc})", retryable=True
            ) from exc


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


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def shared_client() -> httpx.AsyncClient:
    """Return this event loop's one httpx client, so calls reuse warm Deepgram connections."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=3.0),
            # httpx drops idle connections after 5 s by default; calls arrive further apart.
            limits=httpx.Limits(
                max_connections=200, max_keepalive_connections=50, keepalive_expiry=300.0
            ),
        )
        _clients[loop] = client
    return client


async def close_shared_client() -> None:
    """Close this event loop's shared client (tests and shutdown)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def get_tts() -> DeepgramTTS:
    """Build the Deepgram client from current settings and this loop's connection pool."""
    return DeepgramTTS(
        api_key=settings.DEEPGRAM_API_KEY,
        base_url=settings.DEEPGRAM_API_URL,
        client=shared_client(),
    )
