"""A server stopping mid-call still leaves every started call with its final status."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator

from calls import shutdown
from calls.fake_deepgram import FakeDeepgram
from calls.models import Call
from tests import frames
from voicebridge.asgi import application

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


async def call_in_progress(deepgram: FakeDeepgram) -> WebsocketCommunicator:
    deepgram.hold()
    communicator = WebsocketCommunicator(application, "/twilio")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data=frames.start())
    assert json.loads(await communicator.receive_from(timeout=5))["event"] == "media"
    return communicator


async def test_end_open_calls_records_and_closes_them(deepgram: FakeDeepgram) -> None:
    communicator = await call_in_progress(deepgram)
    await shutdown.end_open_calls()
    while (await communicator.receive_output(timeout=5))["type"] != "websocket.close":
        pass
    await communicator.disconnect()
    deepgram.release()
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.FAILED
    assert call.error == "the server stopped during the call"
    assert call.ended_at is not None


async def test_cancelled_consumer_records_the_call_first(deepgram: FakeDeepgram) -> None:
    communicator = await call_in_progress(deepgram)
    communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await communicator.future
    deepgram.release()
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.FAILED
    assert call.error == "the server stopped during the call"


async def test_ended_calls_are_forgotten(deepgram: FakeDeepgram) -> None:
    communicator = await call_in_progress(deepgram)
    deepgram.release()
    await communicator.send_to(text_data=frames.stop())
    await communicator.disconnect()
    await shutdown.end_open_calls()
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.COMPLETED
    assert call.error == ""
