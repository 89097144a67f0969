from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from devtools.fake_deepgram import FakeDeepgram, SpeakRequest, fake_audio, running_in_thread

MODEL = "aura-2-thalia-en"
AUDIO_FORMAT = {"encoding": "mulaw", "sample_rate": "8000", "container": "none"}
AUTH = {"Authorization": "Token test-key"}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def speak_params(model: str = MODEL, **overrides: str | None) -> dict[str, str]:
    """Build the query our client sends, with some parameters changed or (None) removed."""
    params = {"model": model, **AUDIO_FORMAT, **overrides}
    return {k: v for k, v in params.items() if v is not None}


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDeepgram]:
    """A FakeDeepgram listening on a free port for one test."""
    server = FakeDeepgram()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client that is closed after the test."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        yield http


async def speak(
    http: httpx.AsyncClient,
    fake: FakeDeepgram,
    text: str = "Hello caller.",
    *,
    model: str = MODEL,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST one speak request the way calls.speech.deepgram does."""
    return await http.post(
        f"{fake.url}/v1/speak",
        params=speak_params(model),
        headers=AUTH if headers is None else headers,
        json={"text": text},
    )


def assert_deepgram_error(response: httpx.Response, status: int, err_code: str | None) -> dict:
    """Check the JSON error shape every failure shares and return its body."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"err_code", "err_msg", "request_id"}
    assert body["request_id"] == response.headers["dg-request-id"]
    uuid.UUID(body["request_id"])
    if err_code is not None:
        assert body["err_code"] == err_code
    return body


async def open_raw(fake: FakeDeepgram) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a plain TCP connection to the fake."""
    port = int(fake.url.rsplit(":", 1)[1])
    return await asyncio.open_connection("127.0.0.1", port)


async def close_raw(writer: asyncio.StreamWriter) -> None:
    """Close a plain TCP connection, ignoring a peer that already went."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def raw_speak(text: str, *, extra_headers: str = "") -> bytes:
    """Serialize a speak request by hand."""
    body = json.dumps({"text": text}).encode()
    query = "&".join(f"{k}={v}" for k, v in speak_params().items())
    return (
        f"POST /v1/speak?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Token k\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra_headers}\r\n"
    ).encode() + body


# --- fake_audio ---


@given(
    model=st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", max_size=30),
    text=st.text(max_size=60),
)
def test_fake_audio_is_deterministic_sized_and_not_text(model: str, text: str) -> None:
    audio = fake_audio(model, text)
    assert audio == fake_audio(model, text)
    assert len(audio) == max(160, 80 * len(text))
    with pytest.raises(UnicodeDecodeError):
        audio.decode("utf-8")


@given(
    a=st.tuples(st.sampled_from(["aura-asteria-en", MODEL]), st.text(max_size=20)),
    b=st.tuples(st.sampled_from(["aura-asteria-en", MODEL]), st.text(max_size=20)),
)
def test_fake_audio_differs_per_model_and_text(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert (fake_audio(*a) == fake_audio(*b)) == (a == b)


def test_fake_audio_handles_lone_surrogates() -> None:
    assert len(fake_audio(MODEL, "\ud800x")) == 160


# --- successful speech ---


@pytest.mark.asyncio
async def test_streams_exact_audio_with_deepgram_headers(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    text = "Thanks for calling. " * 10
    response = await speak(client, fake, text)

    assert response.status_code == 200
    assert response.content == fake_audio(MODEL, text)
    assert response.headers["content-type"] == "audio/basic"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["dg-model-name"] == MODEL
    assert response.headers["dg-char-count"] == str(len(text))
    assert uuid.UUID(response.headers["dg-request-id"]).version == 4
    [recorded] = fake.requests
    assert isinstance(recorded, SpeakRequest)
    assert recorded.model == MODEL
    assert recorded.text == text
    assert recorded.query == speak_params()
    assert recorded.headers["authorization"] == "Token test-key"
    assert recorded.connection == 1
    assert recorded.request_id == response.headers["dg-request-id"]


@pytest.mark.asyncio
async def test_longest_allowed_text_is_spoken(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    text = "a" * 2000
    response = await speak(client, fake, text)
    assert response.status_code == 200
    assert response.content == fake_audio(MODEL, text)


@pytest.mark.asyncio
async def test_text_plain_body_is_spoken(fake: FakeDeepgram, client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{fake.url}/v1/speak",
        params=speak_params(),
        headers={**AUTH, "Content-Type": "text/plain; charset=utf-8"},
        content=b"Plain words.",
    )
    assert response.status_code == 200
    assert response.content == fake_audio(MODEL, "Plain words.")


@pytest.mark.asyncio
async def test_body_is_sent_in_chunks_of_chunk_size() -> None:
    fake = FakeDeepgram(chunk_size=300)
    await fake.start()
    try:
        reader, writer = await open_raw(fake)
        writer.write(raw_speak("x" * 10, extra_headers="Connection: close\r\n"))
        raw = await reader.read()
        await close_raw(writer)
    finally:
        await fake.stop()

    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nconnection: close" in head
    sizes = []
    audio = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n"
            break
        sizes.append(size)
        audio += body[:size]
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]
    assert sizes == [300, 300, 200]
    assert audio == fake_audio(MODEL, "x" * 10)


@pytest.mark.asyncio
async def test_ttfb_and_speed_delay_the_audio() -> None:
    fake = FakeDeepgram(ttfb=0.2, speed=4, chunk_size=800)
    await fake.start()
    text = "y" * 40  # 3200 bytes: the last 800-byte chunk is due 2400 / 32000 s after the first
    try:
        async with httpx.AsyncClient(timeout=10.0) as http:
            began = time.monotonic()
            async with http.stream(
                "POST",
                f"{fake.url}/v1/speak",
                params=speak_params(),
                headers=AUTH,
                json={"text": text},
            ) as response:
                audio = b""
                first_at = None
                async for part in response.aiter_raw():
                    if first_at is None:
                        first_at = time.monotonic() - began
                    audio += part
            total = time.monotonic() - began
    finally:
        await fake.stop()

    assert audio == fake_audio(MODEL, text)
    assert first_at is not None and first_at >= 0.2
    assert total >= 0.2 + 2400 / 32000


# --- validation, like the real endpoint ---


@pytest.mark.asyncio
async def test_missing_authorization_is_401_even_without_a_key(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    response = await speak(client, fake, headers={})
    assert_deepgram_error(response, 401, "INVALID_AUTH")
    assert (await speak(client, fake, headers={"Authorization": "Token anything"})).is_success


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("Token right-key", 200),
        ("Token wrong-key", 401),
        ("Bearer right-key", 401),
        ("right-key", 401),
        (None, 401),
    ],
)
async def test_api_key_must_match_exactly(
    client: httpx.AsyncClient, authorization: str | None, status: int
) -> None:
    fake = FakeDeepgram(api_key="right-key")
    await fake.start()
    try:
        headers = {} if authorization is None else {"Authorization": authorization}
        response = await speak(client, fake, headers=headers)
    finally:
        await fake.stop()
    assert response.status_code == status
    if status == 401:
        assert_deepgram_error(response, 401, "INVALID_AUTH")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "overrides",
    [
        {"encoding": "linear16"},
        {"encoding": None},
        {"sample_rate": "16000"},
        {"sample_rate": None},
        {"container": "wav"},
        {"container": None},
        {"bit_rate": "48000"},
    ],
)
async def test_audio_format_other_than_raw_8khz_mulaw_is_rejected(
    fake: FakeDeepgram, client: httpx.AsyncClient, overrides: dict[str, str | None]
) -> None:
    response = await client.post(
        f"{fake.url}/v1/speak",
        params=speak_params(MODEL, **overrides),
        headers=AUTH,
        json={"text": "Hi."},
    )
    assert_deepgram_error(response, 400, "INVALID_QUERY_PARAMETER")
    assert len(fake.requests) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("model", "status"),
    [
        ("aura-asteria-en", 200),
        ("aura-2-thalia-en", 200),
        ("aura-2-carina-es", 200),
        ("aura-3-thalia-en", 400),
        ("aura-2-Thalia-en", 400),
        ("aura-2-thalia-eng", 400),
        ("flux-haley-en", 400),
        ("", 400),
    ],
)
async def test_model_must_look_like_an_aura_voice(
    fake: FakeDeepgram, client: httpx.AsyncClient, model: str, status: int
) -> None:
    response = await speak(client, fake, model=model)
    assert response.status_code == status
    if status == 400:
        body = assert_deepgram_error(response, 400, None)
        assert body["err_msg"] == "No such model/language/tier combination found."


@pytest.mark.asyncio
async def test_omitted_model_defaults_to_asteria(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        f"{fake.url}/v1/speak", params=AUDIO_FORMAT, headers=AUTH, json={"text": "Hi."}
    )
    assert response.content == fake_audio("aura-asteria-en", "Hi.")
    assert fake.requests[0].model == "aura-asteria-en"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("content", "content_type", "status", "err_code", "err_msg"),
    [
        (b"{not json", "application/json", 400, "PAYLOAD_ERROR", None),
        (b'["text"]', "application/json", 400, "PAYLOAD_ERROR", None),
        (b'{"text": 5}', "application/json", 400, "PAYLOAD_ERROR", None),
        (b'{"url": "https://example.com/t.txt"}', "application/json", 400, "PAYLOAD_ERROR", None),
        (b"\xff\xfe", "application/json", 400, "PAYLOAD_ERROR", None),
        (b'{"text": ""}', "application/json", 400, None, "Input text contains no characters."),
        (b'{"text": "  "}', "application/json", 400, None, "Input text contains no characters."),
        (
            json.dumps({"text": "a" * 2001}).encode(),
            "application/json",
            413,
            None,
            "Input text exceeds maximum character limit of 2000.",
        ),
        (b'{"text": "hi"}', "application/xml", 415, "UNSUPPORTED_MEDIA_TYPE", None),
    ],
)
async def test_bad_bodies_get_deepgram_errors(
    fake: FakeDeepgram,
    client: httpx.AsyncClient,
    content: bytes,
    content_type: str,
    status: int,
    err_code: str | None,
    err_msg: str | None,
) -> None:
    response = await client.post(
        f"{fake.url}/v1/speak",
        params=speak_params(),
        headers={**AUTH, "Content-Type": content_type},
        content=content,
    )
    body = assert_deepgram_error(response, status, err_code)
    if err_msg is not None:
        assert body["err_msg"] == err_msg


@pytest.mark.asyncio
async def test_unknown_paths_and_methods_get_json_errors(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    assert_deepgram_error(await client.post(f"{fake.url}/v1/listen"), 404, "NOT_FOUND")
    response = await client.get(f"{fake.url}/v1/speak")
    assert_deepgram_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"
    assert fake.requests == []


# --- scripted behaviour ---


@pytest.mark.asyncio
async def test_fail_answers_the_next_requests_then_recovers(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    fake.fail(429, times=2, headers={"Retry-After": "1"})

    for _ in range(2):
        response = await speak(client, fake)
        body = assert_deepgram_error(response, 429, "Too Many Requests")
        assert body["err_msg"] == "Please try again later."
        assert response.headers["retry-after"] == "1"
    assert (await speak(client, fake)).status_code == 200
    assert len(fake.requests) == 3


@pytest.mark.asyncio
async def test_fail_takes_a_custom_message(fake: FakeDeepgram, client: httpx.AsyncClient) -> None:
    fake.fail(503, err_msg="Upstream model is warming up.")
    body = assert_deepgram_error(await speak(client, fake), 503, "Service Unavailable")
    assert body["err_msg"] == "Upstream model is warming up."


def test_scripting_rejects_nonsense() -> None:
    fake = FakeDeepgram()
    with pytest.raises(ValueError):
        fake.fail(200)
    with pytest.raises(ValueError):
        fake.fail(500, times=0)
    with pytest.raises(ValueError):
        fake.stall(-1)
    with pytest.raises(ValueError):
        fake.cut(-5)


@pytest.mark.asyncio
async def test_script_is_consumed_in_order_one_per_request(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    fake.fail(500)
    fake.stall(0.2)
    fake.cut(100)

    assert (await speak(client, fake)).status_code == 500
    began = time.monotonic()
    response = await speak(client, fake)
    assert response.status_code == 200
    assert time.monotonic() - began >= 0.2
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await speak(client, fake)
    assert (await speak(client, fake)).status_code == 200
    assert len(fake.requests) == 4


@pytest.mark.asyncio
async def test_stall_also_delays_errors(fake: FakeDeepgram, client: httpx.AsyncClient) -> None:
    fake.stall(0.2)
    began = time.monotonic()
    response = await speak(client, fake, headers={})
    assert response.status_code == 401
    assert time.monotonic() - began >= 0.2


@pytest.mark.asyncio
async def test_cut_drops_the_connection_mid_body(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    fake.cut(1000)
    received = b""
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        async with client.stream(
            "POST",
            f"{fake.url}/v1/speak",
            params=speak_params(),
            headers=AUTH,
            json={"text": "A long enough sentence to need several chunks."},
        ) as response:
            assert response.status_code == 200
            async for part in response.aiter_raw():
                received += part

    assert received == fake_audio(MODEL, "A long enough sentence to need several chunks.")[:1000]
    assert (await speak(client, fake)).status_code == 200
    assert fake.connections_opened == 2


@pytest.mark.asyncio
async def test_hold_sends_the_first_chunk_and_waits_for_release(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    text = "Please hold while I look that up."
    audio = fake_audio(MODEL, text)
    fake.hold()
    async with client.stream(
        "POST", f"{fake.url}/v1/speak", params=speak_params(), headers=AUTH, json={"text": text}
    ) as response:
        parts = response.aiter_raw()
        received = b""
        while len(received) < 800:
            received += await anext(parts)
        assert received == audio[:800]

        async def rest() -> bytes:
            return b"".join([part async for part in parts])

        remainder = asyncio.ensure_future(rest())
        await asyncio.sleep(0.2)
        assert not remainder.done()
        fake.release()
        received += await remainder
    assert received == audio


@pytest.mark.asyncio
async def test_reset_forgets_everything(fake: FakeDeepgram, client: httpx.AsyncClient) -> None:
    await speak(client, fake)
    fake.fail(500)
    fake.hold()
    fake.reset()

    assert fake.requests == []
    assert fake.connections_opened == 0
    assert (await speak(client, fake)).content == fake_audio(MODEL, "Hello caller.")


# --- connections ---


@pytest.mark.asyncio
async def test_keep_alive_reuses_one_connection(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    assert (await speak(client, fake, "one")).status_code == 200
    assert (await speak(client, fake, "two")).status_code == 200
    fake.fail(400)
    assert (await speak(client, fake, "three")).status_code == 400
    assert (await speak(client, fake, "four")).status_code == 200

    assert fake.connections_opened == 1
    assert [r.connection for r in fake.requests] == [1, 1, 1, 1]


@pytest.mark.asyncio
async def test_connection_close_is_honoured(fake: FakeDeepgram, client: httpx.AsyncClient) -> None:
    response = await speak(client, fake, headers={**AUTH, "Connection": "close"})
    assert response.headers["connection"] == "close"
    await speak(client, fake)
    assert [r.connection for r in fake.requests] == [1, 2]


@pytest.mark.asyncio
async def test_pipelined_and_chunked_requests_on_one_socket(fake: FakeDeepgram) -> None:
    body = json.dumps({"text": "chunked"}).encode()
    query = "&".join(f"{k}={v}" for k, v in speak_params().items())
    chunked = (
        (
            f"POST /v1/speak?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Token k\r\n"
            f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            f"{len(body[:5]):x}\r\n"
        ).encode()
        + body[:5]
        + f"\r\n{len(body[5:]):x}\r\n".encode()
        + body[5:]
        + b"\r\n0\r\n\r\n"
    )
    reader, writer = await open_raw(fake)
    writer.write(raw_speak("first") + chunked)
    raw = await reader.read()
    await close_raw(writer)

    assert raw.count(b"HTTP/1.1 200 OK") == 2
    assert [r.text for r in fake.requests] == ["first", "chunked"]
    assert fake.connections_opened == 1


@pytest.mark.asyncio
async def test_http_1_0_gets_an_unframed_body_and_a_close(fake: FakeDeepgram) -> None:
    reader, writer = await open_raw(fake)
    writer.write(raw_speak("old client").replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    raw = await reader.read()
    await close_raw(writer)

    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head
    assert body == fake_audio(MODEL, "old client")


@pytest.mark.asyncio
async def test_garbage_gets_a_400_and_a_close(fake: FakeDeepgram) -> None:
    reader, writer = await open_raw(fake)
    writer.write(b"HELLO\r\n\r\n")
    raw = await reader.read()
    await close_raw(writer)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["err_msg"] == "Malformed request line."


@pytest.mark.asyncio
async def test_clients_that_hang_up_mid_stream_are_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeDeepgram(speed=1.0, chunk_size=160)
    await fake.start()
    caplog.set_level(logging.DEBUG)
    try:
        for _ in range(20):
            reader, writer = await open_raw(fake)
            writer.write(raw_speak("a sentence that takes a few seconds to say out loud"))
            await reader.readuntil(b"\r\n\r\n")
            await reader.read(100)
            # An abortive close makes the next write fail with ECONNRESET or EPIPE.
            writer.transport.abort()
            await close_raw(writer)
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(timeout=10.0) as http:
            assert (await speak(http, fake, "ok")).status_code == 200
        # Every aborted response notices at its next write; the last client's EOF soon after.
        for _ in range(100):
            if not fake._handlers:
                break
            await asyncio.sleep(0.02)
        assert not fake._handlers
    finally:
        await fake.stop()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.asyncio
async def test_three_hundred_concurrent_requests() -> None:
    fake = FakeDeepgram(ttfb=0.05, chunk_size=400)
    await fake.start()
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    try:
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
            texts = [f"Caller number {i} is being greeted." for i in range(300)]
            responses = await asyncio.gather(*(speak(http, fake, text) for text in texts))
    finally:
        await fake.stop()

    assert [r.content for r in responses] == [fake_audio(MODEL, t) for t in texts]
    assert sorted(r.text for r in fake.requests) == sorted(texts)
    assert 1 < fake.connections_opened <= 300


@pytest.mark.asyncio
async def test_stop_drops_held_and_idle_connections(client: httpx.AsyncClient) -> None:
    fake = FakeDeepgram()
    await fake.start()
    await speak(client, fake)
    fake.hold()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        async with client.stream(
            "POST",
            f"{fake.url}/v1/speak",
            params=speak_params(),
            headers=AUTH,
            json={"text": "held forever " * 20},
        ) as response:
            async for _ in response.aiter_raw():
                await fake.stop()
    with pytest.raises(RuntimeError):
        _ = fake.url


# --- control endpoints, for a fake in another process ---


@pytest.mark.asyncio
async def test_control_endpoints_script_and_report(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    script = f"{fake.url}/_fake/script"
    response = await client.post(script, json={"action": "fail", "status": 503, "times": 2})
    assert response.status_code == 204
    assert (await client.post(script, json={"action": "stall", "seconds": 0.01})).status_code == 204

    statuses = [(await speak(client, fake, f"t{i}")).status_code for i in range(4)]
    assert statuses == [503, 503, 200, 200]

    stats = (await client.get(f"{fake.url}/_fake/stats")).json()
    assert stats["requests"] == 4
    assert stats["connections"] == 1
    assert stats["texts"] == [[MODEL, f"t{i}"] for i in range(4)]

    assert (await client.post(script, json={"action": "reset"})).status_code == 204
    stats = (await client.get(f"{fake.url}/_fake/stats")).json()
    assert (stats["requests"], stats["texts"]) == (0, [])


@pytest.mark.asyncio
async def test_control_endpoint_hold_release_and_cut(
    fake: FakeDeepgram, client: httpx.AsyncClient
) -> None:
    script = f"{fake.url}/_fake/script"
    assert (await client.post(script, json={"action": "hold"})).status_code == 204
    assert (await client.get(f"{fake.url}/_fake/stats")).json()["held"] is True
    assert (await client.post(script, json={"action": "release"})).status_code == 204
    assert (await client.post(script, json={"action": "cut", "after_bytes": 0})).status_code == 204
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await speak(client, fake)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "payload",
    [
        {"action": "explode"},
        {"status": 500},
        {"action": "fail"},
        {"action": "fail", "status": 500, "bogus": 1},
        {"action": "stall", "seconds": "soon"},
        ["fail"],
    ],
)
async def test_control_endpoint_rejects_bad_scripts(
    fake: FakeDeepgram, client: httpx.AsyncClient, payload: object
) -> None:
    response = await client.post(f"{fake.url}/_fake/script", json=payload)
    assert_deepgram_error(response, 400, "INVALID_SCRIPT")
    assert (await speak(client, fake)).status_code == 200


# --- other threads and processes ---


def test_running_in_thread_with_a_sync_client() -> None:
    with running_in_thread(chunk_size=100) as fake, httpx.Client(timeout=10.0) as http:
        url = f"{fake.url}/v1/speak"
        fake.fail(502)
        assert (
            http.post(url, params=speak_params(), headers=AUTH, json={"text": "a"}).status_code
            == 502
        )
        ok = http.post(url, params=speak_params(), headers=AUTH, json={"text": "b"})
        assert ok.content == fake_audio(MODEL, "b")

        fake.hold()
        with http.stream(
            "POST", url, params=speak_params(), headers=AUTH, json={"text": "held"}
        ) as response:
            parts = response.iter_raw()
            first = next(parts)
            fake.release()
            rest = b"".join(parts)
        assert first + rest == fake_audio(MODEL, "held")

        assert [r.text for r in fake.requests] == ["a", "b", "held"]
        assert fake.connections_opened == 1
        fake.reset()
        assert fake.requests == []
    with pytest.raises(RuntimeError):
        _ = fake.url


def test_running_in_thread_reports_a_busy_port() -> None:
    with running_in_thread() as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(OSError), running_in_thread(port=port):
            pass


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signalled(signum: signal.Signals) -> None:
    command = [
        sys.executable,
        "-m",
        "devtools.fake_deepgram",
        "--port",
        "0",
        "--ttfb",
        "0.01",
        "--speed",
        "0",
        "--api-key",
        "cli-key",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    with subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.split()[-1]
            with httpx.Client(timeout=10.0) as http:
                denied = http.post(
                    f"{url}/v1/speak", params=speak_params(), headers=AUTH, json={"text": "x"}
                )
                allowed = http.post(
                    f"{url}/v1/speak",
                    params=speak_params(),
                    headers={"Authorization": "Token cli-key"},
                    json={"text": "x"},
                )
            process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert denied.status_code == 401
    assert allowed.content == fake_audio(MODEL, "x")
    assert process.returncode == 0
    assert stdout == ""
    assert stderr == ""


def test_cli_help_describes_every_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devtools.fake_deepgram", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for option in ("--host", "--port", "--ttfb", "--speed", "--chunk-size", "--api-key"):
        assert option in result.stdout
