"""Bad input on the Media Stream: one plain log line, no traceback, no Deepgram request."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass

import pytest
from channels.testing import WebsocketCommunicator

from calls.models import Call
from calls.records.queries import FALLBACK_GREETING
from calls.twilio.protocol import GREETING_MARK
from devtools.fake_deepgram import FakeDeepgram, fake_audio
from tests import frames
from voicebridge.asgi import application

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

BEFORE_START = "(before start)"


def start_without(field: str) -> str:
    message = json.loads(frames.start())
    del message["start"][field]
    return json.dumps(message)


@dataclass(frozen=True)
class Bad:
    """A bad frame, what the consumer should do with it and the reason it should log."""

    frame: str | bytes
    outcome: str  # "ignored" or "closed"
    reason: str
    call_sid: str = BEFORE_START


OVERSIZED = '{"event":"media","media":{"payload":"' + "A" * 70_000 + '"}}'

BEFORE_START_CASES = {
    "not-json": Bad("hello twilio", "ignored", "frame is not JSON"),
    "truncated-json": Bad('{"event": "start", ', "ignored", "frame is not JSON"),
    "json-array": Bad("[1, 2, 3]", "ignored", "not a JSON object"),
    "binary": Bad(b"\x00\x01\x02", "ignored", "binary frame"),
    "unknown-event": Bad('{"event": "hangup"}', "ignored", "unknown event 'hangup'"),
    "no-event": Bad('{"streamSid": "MZ1"}', "ignored", "no event name"),
    "dtmf-without-body": Bad('{"event": "dtmf"}', "ignored", "dtmf is missing"),
    "mark-name-not-text": Bad(
        '{"event": "mark", "mark": {"name": 5}}', "ignored", "name is missing or not a string"
    ),
    # Caller audio is never decoded (we do not use it), so a bad payload costs one prefix match.
    "media-payload-not-base64": Bad(
        '{"event": "media", "media": {"payload": "%%%"}}', "ignored", "media before start"
    ),
    "oversized": Bad(OVERSIZED, "ignored", "over 65536"),
    "media-before-start": Bad(frames.media(1), "ignored", "media before start"),
    "mark-before-start": Bad(frames.mark(GREETING_MARK), "ignored", "event before start"),
    "dtmf-before-start": Bad(frames.dtmf("1"), "ignored", "event before start"),
    "stop-before-start": Bad(frames.stop(), "ignored", "event before start"),
    "start-without-callsid": Bad(start_without("callSid"), "closed", "callSid is missing"),
    "start-without-streamsid": Bad(start_without("streamSid"), "closed", "streamSid is missing"),
    "start-with-bad-sid": Bad(
        frames.start(call_sid="CA<script>"), "closed", "callSid is not a Twilio SID"
    ),
    "start-parameters-not-object": Bad(
        json.dumps({**json.loads(frames.start()), "start": {"customParameters": [1]}}),
        "closed",
        "customParameters is not an object",
    ),
}


def reasons(caplog: pytest.LogCaptureFixture, reason: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if reason in r.getMessage()]


async def send(communicator: WebsocketCommunicator, frame: str | bytes) -> None:
    if isinstance(frame, bytes):
        await communicator.send_to(bytes_data=frame)
    else:
        await communicator.send_to(text_data=frame)


@pytest.mark.parametrize("case", BEFORE_START_CASES.values(), ids=BEFORE_START_CASES.keys())
async def test_bad_input_before_start(
    case: Bad, deepgram: FakeDeepgram, caplog: pytest.LogCaptureFixture
) -> None:
    communicator = WebsocketCommunicator(application, "/twilio")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data=frames.connected())
    with caplog.at_level(logging.DEBUG, logger="calls"):
        await send(communicator, case.frame)
        if case.outcome == "closed":
            assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
        else:
            # Sent twice, logged once; and nothing goes back to Twilio.
            await send(communicator, case.frame)
            assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()

    (record,) = reasons(caplog, case.reason)
    assert record.levelno == logging.WARNING
    assert case.call_sid in record.getMessage()
    assert not any(r.exc_info for r in caplog.records)
    assert all(r.levelno < logging.ERROR for r in caplog.records)
    assert deepgram.requests == []
    assert not await Call.objects.aexists()


AFTER_START_CASES = {
    "not-json": Bad("hello", "ignored", "frame is not JSON"),
    "binary": Bad(b"\xff" * 10, "ignored", "binary frame"),
    "unknown-event": Bad('{"event": "transcript"}', "ignored", "unknown event"),
    "dtmf-not-a-key": Bad('{"event": "dtmf", "dtmf": {"digit": "xx"}}', "ignored", "is not a key"),
    "oversized": Bad(OVERSIZED, "ignored", "over 65536"),
    "second-start": Bad(frames.start(call_sid="CA" + "9" * 32), "ignored", "second start"),
    "start-with-bad-body": Bad(start_without("callSid"), "ignored", "callSid is missing"),
}


@pytest.mark.parametrize("case", AFTER_START_CASES.values(), ids=AFTER_START_CASES.keys())
async def test_bad_input_during_a_call_is_ignored_and_the_call_goes_on(
    case: Bad, deepgram: FakeDeepgram, caplog: pytest.LogCaptureFixture
) -> None:
    deepgram.hold()
    communicator = WebsocketCommunicator(application, "/twilio")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data=frames.start())
    assert json.loads(await communicator.receive_from(timeout=5))["event"] == "media"
    with caplog.at_level(logging.DEBUG, logger="calls"):
        await send(communicator, case.frame)
        await send(communicator, case.frame)
    deepgram.release()
    audio_left = 0
    while (message := json.loads(await communicator.receive_from(timeout=5)))["event"] == "media":
        audio_left += 1
    assert message["mark"]["name"] == GREETING_MARK
    await communicator.send_to(text_data=frames.stop())
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()

    (record,) = reasons(caplog, case.reason)
    assert frames.CALL_SID in record.getMessage()
    assert not any(r.exc_info for r in caplog.records)
    assert len(deepgram.requests) == 1
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.COMPLETED


async def test_start_for_an_unknown_greeting_speaks_the_default(
    deepgram: FakeDeepgram, caplog: pytest.LogCaptureFixture
) -> None:
    communicator = WebsocketCommunicator(application, "/twilio")
    assert (await communicator.connect())[0]
    with caplog.at_level(logging.WARNING, logger="calls"):
        await communicator.send_to(text_data=frames.start({"greeting": "4242"}))
        audio = bytearray()
        while (message := json.loads(await communicator.receive_from(timeout=5)))[
            "event"
        ] == "media":
            audio += base64.b64decode(message["media"]["payload"])
    await communicator.disconnect()
    assert bytes(audio) == fake_audio(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)
    (record,) = reasons(caplog, "does not exist")
    assert "'4242'" in record.getMessage() and frames.CALL_SID in record.getMessage()


async def test_a_bad_stream_does_not_disturb_another_call(deepgram: FakeDeepgram) -> None:
    good = WebsocketCommunicator(application, "/twilio")
    bad = WebsocketCommunicator(application, "/twilio")
    assert (await good.connect())[0] and (await bad.connect())[0]
    for frame in ("nonsense", OVERSIZED, '{"event": 1}', frames.media(1)):
        await bad.send_to(text_data=frame)
    await bad.send_to(bytes_data=b"\x00")
    await good.send_to(text_data=frames.start())
    while (message := json.loads(await good.receive_from(timeout=5)))["event"] == "media":
        pass
    assert message["event"] == "mark"
    assert await bad.receive_nothing(timeout=0.2)
    await good.disconnect()
    await bad.disconnect()
    assert len(deepgram.requests) == 1
