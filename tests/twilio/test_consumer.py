"""The Media Stream consumer, driven like Twilio drives it."""

from __future__ import annotations

import asyncio
import base64
import json
from contextlib import aclosing

import pytest
from channels.testing import WebsocketCommunicator

from calls.models import Call, Greeting
from calls.records.queries import FALLBACK_GREETING
from calls.speech.synthesis import open_cached, remember
from calls.speech.text import speech_key
from calls.twilio import consumer
from calls.twilio.protocol import GREETING_MARK, parse_event
from devtools.fake_deepgram import FakeDeepgram, fake_audio
from tests import frames
from voicebridge.asgi import application

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

GREETING_AUDIO = fake_audio(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)


async def open_stream(params: dict[str, str] | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/twilio")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(text_data=frames.connected())
    await communicator.send_to(text_data=frames.start(params))
    return communicator


async def receive(communicator: WebsocketCommunicator) -> dict:
    return json.loads(await communicator.receive_from(timeout=5))


async def audio_until_mark(communicator: WebsocketCommunicator) -> tuple[bytes, str]:
    audio = bytearray()
    while True:
        message = await receive(communicator)
        assert message["streamSid"] == frames.STREAM_SID
        if message["event"] == "media":
            assert set(message) == {"event", "streamSid", "media"}
            assert set(message["media"]) == {"payload"}
            audio += base64.b64decode(message["media"]["payload"])
        else:
            assert message["event"] == "mark"
            return bytes(audio), message["mark"]["name"]


async def hang_up(communicator: WebsocketCommunicator) -> None:
    await communicator.send_to(text_data=frames.stop())
    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    await communicator.disconnect()


async def call_row() -> Call:
    return await Call.objects.select_related("greeting").aget(call_sid=frames.CALL_SID)


async def default_greeting() -> Greeting:
    return await Greeting.objects.aget(is_default=True)


async def test_greeting_audio_arrives_exactly_then_a_mark(deepgram: FakeDeepgram) -> None:
    greeting = await default_greeting()
    communicator = await open_stream({"greeting": str(greeting.pk), "from": "+1", "to": "+2"})
    for n in range(1, 6):
        await communicator.send_to(text_data=frames.media(n))
    audio, mark = await audio_until_mark(communicator)
    assert audio == GREETING_AUDIO
    assert mark == GREETING_MARK
    await communicator.send_to(text_data=frames.mark(GREETING_MARK))
    await hang_up(communicator)

    call = await call_row()
    assert call.status == Call.Status.COMPLETED
    assert call.greeting == greeting
    assert (call.from_number, call.to_number) == ("+1", "+2")
    assert call.stream_sid == frames.STREAM_SID
    assert call.ended_at is not None
    assert call.first_audio_ms is not None
    assert call.from_cache is False
    assert call.playback_confirmed is True
    assert [r.model for r in deepgram.requests] == ["aura-asteria-en"]
    assert deepgram.requests[0].headers["authorization"] == "Token test-deepgram-key"


async def test_first_audio_is_sent_before_deepgram_finishes(deepgram: FakeDeepgram) -> None:
    deepgram.hold()
    communicator = await open_stream()
    first = await receive(communicator)
    assert first["event"] == "media"
    received = base64.b64decode(first["media"]["payload"])
    assert GREETING_AUDIO.startswith(received)
    assert len(received) < len(GREETING_AUDIO)
    deepgram.release()
    rest, _ = await audio_until_mark(communicator)
    assert received + rest == GREETING_AUDIO
    await hang_up(communicator)


async def test_nothing_is_sent_before_start(deepgram: FakeDeepgram) -> None:
    communicator = WebsocketCommunicator(application, "/twilio")
    await communicator.connect()
    await communicator.send_to(text_data=frames.connected())
    await communicator.send_to(text_data=frames.media(1))
    assert await communicator.receive_nothing(timeout=0.3)
    assert deepgram.requests == []
    await communicator.disconnect()


async def test_edited_greeting_changes_the_next_call(deepgram: FakeDeepgram) -> None:
    greeting = await default_greeting()
    greeting.text = "Thanks for calling the bakery."
    greeting.voice = "aura-2-thalia-en"
    await greeting.asave()
    communicator = await open_stream({"greeting": str(greeting.pk)})
    audio, _ = await audio_until_mark(communicator)
    assert audio == fake_audio("aura-2-thalia-en", "Thanks for calling the bakery.")
    await hang_up(communicator)


async def test_second_call_is_served_from_cache(deepgram: FakeDeepgram) -> None:
    greeting = await default_greeting()
    params = {"greeting": str(greeting.pk), "speech": speech_key(greeting.voice, greeting.text)}
    first = await open_stream(params)
    assert (await audio_until_mark(first))[0] == GREETING_AUDIO
    await hang_up(first)
    # Another call: a finished call's row is never started again.
    second = WebsocketCommunicator(application, "/twilio")
    assert (await second.connect())[0]
    await second.send_to(text_data=frames.start(params, call_sid=f"CA{2:032d}"))
    assert (await audio_until_mark(second))[0] == GREETING_AUDIO
    await hang_up(second)
    assert len(deepgram.requests) == 1
    assert (await Call.objects.aget(call_sid=f"CA{2:032d}")).from_cache is True


async def test_concurrent_callers_share_one_deepgram_request(deepgram: FakeDeepgram) -> None:
    deepgram.hold()
    greeting = await default_greeting()
    params = {"greeting": str(greeting.pk), "speech": speech_key(greeting.voice, greeting.text)}
    callers = []
    for n in range(3):
        communicator = WebsocketCommunicator(application, "/twilio")
        await communicator.connect()
        await communicator.send_to(text_data=frames.start(params, call_sid=f"CA{n:032d}"))
        callers.append(communicator)
    await asyncio.sleep(0.2)
    deepgram.release()
    for communicator in callers:
        assert (await audio_until_mark(communicator))[0] == GREETING_AUDIO
        await communicator.disconnect()
    assert len(deepgram.requests) == 1


async def test_dtmf_interrupts_with_clear_and_stops_the_fetch(deepgram: FakeDeepgram) -> None:
    deepgram.hold()
    communicator = await open_stream()
    assert (await receive(communicator))["event"] == "media"
    await communicator.send_to(text_data=frames.dtmf("5"))
    assert await receive(communicator) == {"event": "clear", "streamSid": frames.STREAM_SID}
    deepgram.release()
    assert await communicator.receive_nothing(timeout=0.3)
    # The fetch stopped part-way, so no whole audio was ever cached.
    assert await open_cached(speech_key(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)) is None
    await hang_up(communicator)
    call = await call_row()
    assert call.status == Call.Status.INTERRUPTED
    assert call.interrupted is True
    assert call.playback_confirmed is False


async def test_dtmf_after_the_greeting_played_sends_nothing(deepgram: FakeDeepgram) -> None:
    communicator = await open_stream()
    await audio_until_mark(communicator)
    await communicator.send_to(text_data=frames.mark(GREETING_MARK))
    await communicator.send_to(text_data=frames.dtmf("1"))
    assert await communicator.receive_nothing(timeout=0.3)
    await hang_up(communicator)
    assert (await call_row()).status == Call.Status.COMPLETED


async def test_dropped_socket_finishes_the_call_row(deepgram: FakeDeepgram) -> None:
    deepgram.hold()
    communicator = await open_stream()
    assert (await receive(communicator))["event"] == "media"
    await communicator.disconnect()
    deepgram.release()
    call = await call_row()
    assert call.status == Call.Status.COMPLETED
    assert call.ended_at is not None


async def test_a_start_opens_its_greeting_as_it_is_read(deepgram: FakeDeepgram) -> None:
    greeting = await default_greeting()
    frame = frames.start({"speech": remember(greeting.voice, greeting.text)})
    # What the consumer does with a `start` the moment it reads it, before Channels dispatches it.
    head = consumer._head_start(frame)
    assert head.text is frame and head.start == parse_event(frame)
    assert head.speech is not None and head.speech.synthesis is not None
    audio = bytearray()
    async with aclosing(head.speech.chunks()) as chunks:
        async for chunk in chunks:
            audio += chunk
    assert bytes(audio) == GREETING_AUDIO
    assert len(deepgram.requests) == 1


@pytest.mark.parametrize(
    "frame",
    [frames.start(), '{"event":"start","start":', '{"event":"start","event":"mark"}'],
    ids=["no-speech-key", "not-json", "not-a-start"],
)
def test_a_start_with_nothing_to_open_ahead_opens_nothing(frame: str) -> None:
    head = consumer._head_start(frame)
    assert head.speech is None
    assert (head.start is None) == (frame != frames.start())
