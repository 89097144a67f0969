"""The Deepgram Aura client, against httpx's MockTransport."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing

import httpx
import pytest
from pytest_django.fixtures import Settings

from calls.speech.deepgram import DeepgramTTS, TTSError, get_tts
from devtools.fake_deepgram import FakeDeepgram, fake_audio


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

    async with httpx.MockTransport(handler) as transport:
        tts = DeepgramTTS(api_key="k", base_url="https://dg.example", transport=transport)
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
    assert request.headers["user-agent"] == "voicebridge"
    assert request.extensions["timeout"] == {
        "connect": 3.0,
        "read": 10.0,
        "write": 10.0,
        "pool": 10.0,
    }
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

    async with httpx.MockTransport(handler) as transport:
        tts = DeepgramTTS(api_key="k", base_url="https://dg.example", transport=transport)
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

    async with httpx.MockTransport(handler) as transport:
        tts = DeepgramTTS(api_key="k", base_url="https://dg.example", transport=transport)
        with pytest.raises(TTSError, match="Bad gateway"):
            await collect(tts)


async def test_connection_failure_is_a_retryable_tts_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.MockTransport(handler) as transport:
        tts = DeepgramTTS(api_key="k", base_url="https://dg.example", transport=transport)
        with pytest.raises(TTSError) as info:
            await collect(tts)
    assert info.value.retryable


async def test_missing_key_fails_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    async with httpx.MockTransport(handler) as transport:
        tts = DeepgramTTS(api_key="", base_url="https://dg.example", transport=transport)
        with pytest.raises(TTSError, match="DEEPGRAM_API_KEY"):
            await collect(tts)


async def test_retries_only_before_the_first_byte_and_within_the_deadline() -> None:
    statuses = iter([429, 503, 200])
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        seen.append(status)
        return httpx.Response(status, content=b"\x05" * 10 if status == 200 else b"{}")

    async with httpx.MockTransport(handler) as transport:
        tts = DeepgramTTS(api_key="k", base_url="https://dg.example", transport=transport)
        with pytest.raises(TTSError, match="429"):
            await collect(tts)  # no deadline: no retries
        retrying = DeepgramTTS(
            api_key="k", base_url="https://dg.example", transport=transport, retry_deadline=5
        )
        assert await collect(retrying) == b"\x05" * 10
    assert seen == [429, 503, 200]


async def test_an_attempt_the_deadline_cuts_short_reports_the_failure_before_it() -> None:
    attempts = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise httpx.ConnectError("All connection attempts failed", request=request)
        # The retry starts close to the deadline and is still waiting when it passes.
        await asyncio.sleep(5)
        raise AssertionError("the deadline should have ended this attempt")

    async with httpx.MockTransport(handler) as transport:
        tts = DeepgramTTS(
            api_key="k", base_url="https://dg.example", transport=transport, retry_deadline=0.3
        )
        with pytest.raises(TTSError, match="connection failed"):
            await collect(tts)
    assert attempts == 2


async def test_cap_on_concurrent_deepgram_requests(
    deepgram: FakeDeepgram, settings: Settings
) -> None:
    settings.DEEPGRAM_MAX_CONCURRENCY = 2
    deepgram.hold()
    tasks = [
        asyncio.get_running_loop().create_task(collect(get_tts(), "aura-asteria-en", f"Call {n}."))
        for n in range(5)
    ]
    for _ in range(200):
        if len(deepgram.requests) >= 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    # Two requests are streaming (held); the other three queue here instead of at Deepgram.
    assert len(deepgram.requests) == 2
    deepgram.release()
    audio = await asyncio.gather(*tasks)
    assert audio == [fake_audio("aura-asteria-en", f"Call {n}.") for n in range(5)]
    assert len(deepgram.requests) == 5


async def test_requests_one_after_another_share_one_connection(deepgram: FakeDeepgram) -> None:
    first = await collect(get_tts(), "aura-asteria-en", "One.")
    second = await collect(get_tts(), "aura-asteria-en", "Two.")
    assert (first, second) == (
        fake_audio("aura-asteria-en", "One."),
        fake_audio("aura-asteria-en", "Two."),
    )
    assert [r.connection for r in deepgram.requests] == [1, 1]
