"""The Deepgram Aura client, against httpx's MockTransport."""

from __future__ import annotations

import json
from contextlib import aclosing

import httpx
import pytest

from calls.tts import DeepgramTTS, TTSError


def client_for(handler: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=handler)


async def collect(tts: DeepgramTTS, voice: str = "aura-2-thalia-en", text: str = "Hi") -> bytes:
    out = bytearray()
    async with aclosing(tts.stream(voice, text)) as chunks:
        async for chunk in chunks:
            out += chunk
    return bytes(out)


async def test_request_shape_and_streamed_audio() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"\x01\x02\x03", headers={"dg-request-id": "r1"})

    async with client_for(httpx.MockTransport(handler)) as client:
        tts = DeepgramTTS(api_key="k", base_url="https://dg.example", client=client)
        assert await collect(tts, text="Hello there") == b"\x01\x02\x03"
    request = seen[0]
    assert request.method == "POST"
    assert request.url.path == "/v1/speak"
    assert dict(request.url.params) == {
        "model": "aura-2-thalia-en",
        "encoding": "mulaw",
        "sample_rate": "8000",
        "container": "none",
    }
    assert request.headers["authorization"] == "Token k"
    assert json.loads(request.content) == {"text": "Hello there"}


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (401, False), (403, False), (429, True), (503, True)]
)
async def test_error_status_becomes_tts_error_with_deepgram_message(
    status: int, retryable: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"err_code": "X", "err_msg": "Something is off.", "request_id": "body-id"}
        return httpx.Response(status, json=body, headers={"dg-request-id": "hdr-id"})

    async with client_for(httpx.MockTransport(handler)) as client:
        tts = DeepgramTTS(api_key="k", base_url="https://dg.example", client=client)
        with pytest.raises(TTSError) as info:
            await collect(tts)
    error = info.value
    assert error.status == status
    assert error.request_id == "hdr-id"
    assert error.retryable is retryable
    assert "Something is off." in str(error)


async def test_non_json_error_body_is_reported_not_played() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=b"<html>Bad gateway</html>")

    async with client_for(httpx.MockTransport(handler)) as client:
        tts = DeepgramTTS(api_key="k", base_url="https://dg.example", client=client)
        with pytest.raises(TTSError, match="Bad gateway"):
            await collect(tts)


async def test_connection_failure_is_a_retryable_tts_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with client_for(httpx.MockTransport(handler)) as client:
        tts = DeepgramTTS(api_key="k", base_url="https://dg.example", client=client)
        with pytest.raises(TTSError) as info:
            await collect(tts)
    assert info.value.retryable


async def test_missing_key_fails_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    async with client_for(httpx.MockTransport(handler)) as client:
        tts = DeepgramTTS(api_key="", base_url="https://dg.example", client=client)
        with pytest.raises(TTSError, match="DEEPGRAM_API_KEY"):
            await collect(tts)
