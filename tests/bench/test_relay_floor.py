"""The benchmark's first-audio floor relays Deepgram's first chunk to every waiting caller."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
from channels.testing import WebsocketCommunicator

from bench import relay_floor
from bench.assess import relay_number
from devtools.fake_deepgram import FakeDeepgram, fake_audio
from tests import frames

CHUNK = 400


@pytest.fixture
async def deepgram(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDeepgram]:
    fake = FakeDeepgram(ttfb=0.05, chunk_size=CHUNK)
    await fake.start()
    monkeypatch.setenv(relay_floor.DEEPGRAM_URL_VARIABLE, fake.url)
    # A relay of its own: its connection belongs to this test's loop.
    relay = relay_floor._Relay()
    monkeypatch.setattr(relay_floor, "_relay", relay)
    yield fake
    await relay.close()
    await fake.stop()


async def caller(stream_sid: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(relay_floor.application, "/")
    connected, _ = await communicator.connect()
    assert connected
    start = json.loads(frames.start())
    start["streamSid"] = start["start"]["streamSid"] = stream_sid
    await communicator.send_to(text_data=json.dumps(start))
    return communicator


async def first_media(communicator: WebsocketCommunicator) -> tuple[str, bytes]:
    message = json.loads(await communicator.receive_from(timeout=5))
    assert message["event"] == "media"
    return message["streamSid"], base64.b64decode(message["media"]["payload"])


async def test_callers_waiting_together_share_one_request(deepgram: FakeDeepgram) -> None:
    sids = [f"MZ{i:032x}" for i in range(3)]
    callers = [await caller(sid) for sid in sids]
    heard = [await first_media(communicator) for communicator in callers]
    (request,) = deepgram.requests
    assert request.text.startswith(relay_floor.TEXT_PREFIX)
    first_chunk = fake_audio(request.model, request.text)[:CHUNK]
    assert heard == [(sid, first_chunk) for sid in sids]
    for communicator in callers:
        await communicator.disconnect()


async def test_a_later_burst_asks_again_on_the_same_connection(deepgram: FakeDeepgram) -> None:
    for round_ in range(2):
        communicator = await caller(f"MZ{round_:032x}")
        await first_media(communicator)
        await communicator.disconnect()
    assert len(deepgram.requests) == 2
    assert deepgram.connections_opened == 1


async def test_callers_of_different_numbers_get_requests_of_their_own(
    deepgram: FakeDeepgram,
) -> None:
    callers = []
    for i, number in enumerate(("+15550000001", "+15550000002")):
        communicator = WebsocketCommunicator(relay_floor.application, "/")
        connected, _ = await communicator.connect()
        assert connected
        start = json.loads(frames.start({"to": number}))
        start["streamSid"] = start["start"]["streamSid"] = f"MZ{i:032x}"
        await communicator.send_to(text_data=json.dumps(start))
        callers.append(communicator)
    for communicator in callers:
        await first_media(communicator)
    numbers = [relay_number(r.text) for r in deepgram.requests]
    assert None not in numbers
    assert sorted(n for n in numbers if n is not None) == [
        "+15550000001",
        "+15550000002",
    ]
    for communicator in callers:
        await communicator.disconnect()
