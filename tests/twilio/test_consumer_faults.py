"""Faults inside a call: our own bugs, silent sockets and floods of junk never end the call or
fill the log."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from pytest_django.fixtures import Settings

from calls.live import presence
from calls.models import Call
from calls.twilio.protocol import GREETING_MARK
from devtools.fake_deepgram import FakeDeepgram
from tests import frames
from tests.streams import open_live_stream
from voicebridge.asgi import application

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


async def greeting_heard(communicator: WebsocketCommunicator) -> None:
    while (message := json.loads(await communicator.receive_from(timeout=5)))["event"] == "media":
        pass
    assert message["mark"]["name"] == GREETING_MARK


async def hang_up(communicator: WebsocketCommunicator) -> None:
    await communicator.send_to(text_data=frames.stop())
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()


async def test_a_failing_handler_is_logged_once_and_the_call_goes_on(
    deepgram: FakeDeepgram, caplog: pytest.LogCaptureFixture
) -> None:
    deepgram.hold()
    communicator = await open_live_stream()
    layer = get_channel_layer()
    with caplog.at_level(logging.INFO, logger="calls"):
        for _ in range(3):
            channel = (await presence.whereabouts(frames.CALL_SID)).channel
            await layer.send(channel, {"type": "call.nonsense"})
        await asyncio.sleep(0.2)
        deepgram.release()
        await greeting_heard(communicator)
        await communicator.send_to(text_data=frames.mark(GREETING_MARK))
        await hang_up(communicator)

    faults = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(faults) == 1, [r.getMessage() for r in faults]
    assert frames.CALL_SID in faults[0].getMessage() and faults[0].exc_info
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.COMPLETED
    assert not await presence.is_live(frames.CALL_SID)


async def test_a_call_that_ends_any_way_leaves_live_control(deepgram: FakeDeepgram) -> None:
    communicator = await open_live_stream()
    communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await communicator.future
    assert not await presence.is_live(frames.CALL_SID)


async def test_a_socket_that_never_starts_a_call_is_closed(
    deepgram: FakeDeepgram,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.STREAM_START_TIMEOUT = 0.3
    communicator = WebsocketCommunicator(application, "/twilio")
    assert (await communicator.connect())[0]
    with caplog.at_level(logging.WARNING, logger="calls"):
        await communicator.send_to(text_data=frames.connected())
        assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()
    assert [r.getMessage() for r in caplog.records] == [
        "call (before start): no valid start within 0.3 s; closing"
    ]
    assert deepgram.requests == []


async def test_a_flood_of_junk_writes_a_line_per_kind_and_keeps_nothing(
    deepgram: FakeDeepgram, caplog: pytest.LogCaptureFixture
) -> None:
    communicator = WebsocketCommunicator(application, "/twilio")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data=frames.start())
    await greeting_heard(communicator)
    with caplog.at_level(logging.WARNING, logger="calls"):
        for n in range(300):
            await communicator.send_to(text_data=json.dumps({"event": f"unknown-{n}"}))
            await communicator.send_to(text_data=frames.mark(f"{n}-" + "x" * 60_000))
        await communicator.send_to(text_data=frames.mark(GREETING_MARK))
        await hang_up(communicator)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert any("unknown event" in w for w in warnings)
    assert any("mark never sent" in w for w in warnings)
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert (call.status, call.playback_confirmed) == (Call.Status.COMPLETED, True)
