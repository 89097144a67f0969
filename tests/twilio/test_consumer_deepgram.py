"""When Deepgram fails: retries before the first byte only, the caller never left in silence."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from pytest_django.fixtures import Settings

from calls.models import Call, Greeting
from calls.records.queries import FALLBACK_GREETING
from calls.twilio.protocol import GREETING_MARK
from devtools.devserver import free_port
from devtools.fake_deepgram import FakeDeepgram, fake_audio
from tests import frames
from voicebridge.asgi import application

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

GREETING = FALLBACK_GREETING.text
GREETING_AUDIO = fake_audio("aura-asteria-en", GREETING)


@pytest.fixture(autouse=True)
def quick_retries(settings: Settings) -> None:
    settings.DEEPGRAM_RETRY_DEADLINE = 2.0
    settings.DEEPGRAM_FIRST_BYTE_TIMEOUT = 0.5


async def call(params: dict[str, str] | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/twilio")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data=frames.start(params))
    return communicator


async def until_mark_or_close(communicator: WebsocketCommunicator) -> tuple[bytes, str | None]:
    """Collect audio until the greeting's mark (returned) or the server closes (None)."""
    audio = bytearray()
    while True:
        output = await communicator.receive_output(timeout=10)
        if output["type"] == "websocket.close":
            return bytes(audio), None
        message = json.loads(output["text"])
        if message["event"] == "media":
            audio += base64.b64decode(message["media"]["payload"])
        elif message["event"] == "mark":
            return bytes(audio), message["mark"]["name"]


async def hang_up(communicator: WebsocketCommunicator) -> None:
    await communicator.send_to(text_data=frames.stop())
    await communicator.receive_output(timeout=5)
    await communicator.disconnect()


async def row() -> Call:
    return await Call.objects.aget(call_sid=frames.CALL_SID)


def after_stream(call_sid: str = frames.CALL_SID) -> str:
    response = Client().post("/voice/after-stream", {"CallSid": call_sid})
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize(
    ("status", "err_msg"),
    [
        (401, "Invalid credentials."),
        (402, "Project has insufficient credits."),
        (403, "Project does not have access to the requested model."),
    ],
)
async def test_auth_and_billing_errors_are_not_retried_and_the_caller_hears_say(
    deepgram: FakeDeepgram, caplog: pytest.LogCaptureFixture, status: int, err_msg: str
) -> None:
    deepgram.fail(status, err_msg=err_msg, times=5)
    with caplog.at_level(logging.INFO, logger="calls"):
        communicator = await call()
        audio, mark = await until_mark_or_close(communicator)
    await communicator.disconnect()
    assert (audio, mark) == (b"", None)
    assert len(deepgram.requests) == 1
    request_id = deepgram.requests[0].request_id
    failures = [r.getMessage() for r in caplog.records if "speech failed" in r.getMessage()]
    assert len(failures) == 1
    assert err_msg in failures[0] and request_id in failures[0]
    assert frames.CALL_SID in failures[0]
    assert "test-deepgram-key" not in caplog.text
    call_row = await row()
    assert call_row.status == Call.Status.FAILED
    assert err_msg in call_row.error and f"status={status}" in call_row.error
    assert request_id in call_row.error
    assert call_row.ended_at is not None
    twiml = await _after_stream()
    assert f"<Say>{GREETING}</Say>" in twiml and "<Hangup/>" in twiml


async def _after_stream() -> str:
    return await sync_to_async(after_stream)()


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_transient_errors_are_retried_before_the_first_byte(
    deepgram: FakeDeepgram, status: int
) -> None:
    deepgram.fail(status, times=2)
    communicator = await call()
    audio, mark = await until_mark_or_close(communicator)
    assert (audio, mark) == (GREETING_AUDIO, GREETING_MARK)
    await hang_up(communicator)
    assert len(deepgram.requests) == 3
    assert (await row()).status == Call.Status.COMPLETED
    assert "<Say>" not in await _after_stream()


async def test_slow_first_byte_is_retried(deepgram: FakeDeepgram) -> None:
    deepgram.stall(30)
    communicator = await call()
    audio, mark = await until_mark_or_close(communicator)
    assert (audio, mark) == (GREETING_AUDIO, GREETING_MARK)
    await hang_up(communicator)
    assert len(deepgram.requests) == 2


async def test_retries_stop_at_the_deadline_and_the_caller_hears_say(
    deepgram: FakeDeepgram, settings: Settings
) -> None:
    settings.DEEPGRAM_RETRY_DEADLINE = 0.6
    deepgram.fail(503, times=1000)
    communicator = await call()
    assert await until_mark_or_close(communicator) == (b"", None)
    await communicator.disconnect()
    assert 2 <= len(deepgram.requests) < 20
    call_row = await row()
    assert call_row.status == Call.Status.FAILED
    assert "503" in call_row.error
    assert f"<Say>{GREETING}</Say>" in await _after_stream()


async def test_unreachable_deepgram_fails_the_call_cleanly(
    settings: Settings,
    deepgram: FakeDeepgram,
) -> None:
    settings.DEEPGRAM_API_URL = f"http://127.0.0.1:{free_port()}"
    settings.DEEPGRAM_RETRY_DEADLINE = 0.5
    communicator = await call()
    assert await until_mark_or_close(communicator) == (b"", None)
    await communicator.disconnect()
    call_row = await row()
    assert call_row.status == Call.Status.FAILED
    assert "connection failed" in call_row.error


async def test_drop_mid_body_is_not_retried_and_ends_the_greeting_cleanly(
    deepgram: FakeDeepgram,
) -> None:
    deepgram.cut(800)
    communicator = await call()
    audio, mark = await until_mark_or_close(communicator)
    # What arrived was played once, then the mark: no words twice, no silence forever.
    assert GREETING_AUDIO.startswith(audio) and 0 < len(audio) < len(GREETING_AUDIO)
    assert mark == GREETING_MARK
    await communicator.send_to(text_data=frames.mark(GREETING_MARK))
    await hang_up(communicator)
    assert len(deepgram.requests) == 1
    call_row = await row()
    assert call_row.status == Call.Status.COMPLETED
    assert call_row.first_audio_ms is not None
    assert "connection failed" in call_row.error
    twiml = await _after_stream()
    assert "<Say>" not in twiml and "<Hangup/>" in twiml


async def test_long_greeting_is_split_at_sentence_ends_and_spoken_in_order(
    deepgram: FakeDeepgram,
) -> None:
    sentences = [f"This is sentence number {n} of a very long greeting." for n in range(90)]
    text = " ".join(sentences)
    assert len(text) > 4000
    greeting = await Greeting.objects.aget(is_default=True)
    greeting.text = text
    await greeting.asave()
    communicator = await call({"greeting": str(greeting.pk)})
    audio, mark = await until_mark_or_close(communicator)
    await hang_up(communicator)
    pieces = [r.text for r in deepgram.requests]
    assert len(pieces) == 3
    assert all(len(piece) <= 2000 and piece.endswith(".") for piece in pieces)
    assert " ".join(pieces) == text
    assert audio == b"".join(fake_audio("aura-asteria-en", piece) for piece in pieces)
    assert mark == GREETING_MARK
