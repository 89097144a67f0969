"""A worker told to stop takes no new streams, lets calls finish, then hands the rest over."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from channels.testing import WebsocketCommunicator

from calls.models import Call
from calls.server import drain
from calls.twilio import next_step
from devtools.fake_deepgram import FakeDeepgram
from tests import frames
from voicebridge.asgi import application

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def not_draining() -> Iterator[None]:
    yield
    drain._draining = False


async def call_in_progress(
    deepgram: FakeDeepgram, call_sid: str = frames.CALL_SID
) -> WebsocketCommunicator:
    deepgram.hold()
    communicator = WebsocketCommunicator(application, "/twilio")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data=frames.start(call_sid=call_sid))
    assert json.loads(await communicator.receive_from(timeout=5))["event"] == "media"
    return communicator


async def closed(communicator: WebsocketCommunicator) -> None:
    while (await communicator.receive_output(timeout=5))["type"] != "websocket.close":
        pass
    await communicator.disconnect()


async def test_handing_over_closes_the_stream_and_leaves_the_call_going_on(
    deepgram: FakeDeepgram,
) -> None:
    communicator = await call_in_progress(deepgram)
    await drain.hand_over_open_calls()
    await closed(communicator)
    deepgram.release()
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    # The next stream, on another worker, continues this row.
    assert (call.status, call.ended_at) == (Call.Status.IN_PROGRESS, None)
    assert next_step.read(frames.CALL_SID) == "resume"


async def test_cancelled_consumer_hands_the_call_over(deepgram: FakeDeepgram) -> None:
    communicator = await call_in_progress(deepgram)
    communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await communicator.future
    deepgram.release()
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.IN_PROGRESS
    assert next_step.read(frames.CALL_SID) == "resume"


async def test_ended_calls_are_forgotten(deepgram: FakeDeepgram) -> None:
    communicator = await call_in_progress(deepgram)
    deepgram.release()
    await communicator.send_to(text_data=frames.stop())
    await communicator.disconnect()
    await drain.hand_over_open_calls()
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.COMPLETED
    assert next_step.read(frames.CALL_SID) == "hangup"


async def test_draining_lets_a_call_finish_and_takes_no_new_stream(
    deepgram: FakeDeepgram,
) -> None:
    communicator = await call_in_progress(deepgram)
    stopping = asyncio.create_task(drain.drain(30))
    await asyncio.sleep(0.2)
    assert drain.draining()

    newcomer = WebsocketCommunicator(application, "/twilio")
    assert (await newcomer.connect())[0]
    late_sid = "CA" + "7" * 32
    await newcomer.send_to(text_data=frames.start(call_sid=late_sid))
    # Closed at its start, with nothing spoken: Twilio's action request starts it elsewhere.
    assert (await newcomer.receive_output(timeout=5))["type"] == "websocket.close"
    await newcomer.disconnect()
    assert next_step.read(late_sid) == "resume"

    deepgram.release()
    await communicator.send_to(text_data=frames.stop())
    await closed(communicator)
    await asyncio.wait_for(stopping, 5)
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.COMPLETED


async def test_calls_still_open_when_the_drain_ends_are_handed_over(
    deepgram: FakeDeepgram,
) -> None:
    communicator = await call_in_progress(deepgram)
    await asyncio.wait_for(drain.drain(0.3), 5)
    await closed(communicator)
    deepgram.release()
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.IN_PROGRESS
    assert next_step.read(frames.CALL_SID) == "resume"
