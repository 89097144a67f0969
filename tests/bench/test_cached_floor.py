"""The benchmark's cached-greeting floor plays the audio it holds as soon as a call starts."""

from __future__ import annotations

import base64
import json

from channels.testing import WebsocketCommunicator

from bench import cached_floor
from calls.twilio.protocol import GREETING_MARK
from tests import frames


async def test_a_start_is_answered_with_the_held_audio_and_a_mark() -> None:
    communicator = WebsocketCommunicator(cached_floor.application, "/")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(text_data=frames.connected())
    await communicator.send_to(text_data=frames.start())
    stream_sid = json.loads(frames.start())["streamSid"]
    audio = b""
    while (message := json.loads(await communicator.receive_from(timeout=5)))["event"] == "media":
        assert message["streamSid"] == stream_sid
        piece = base64.b64decode(message["media"]["payload"])
        assert len(piece) <= cached_floor.PIECE_BYTES
        audio += piece
    assert audio == cached_floor.AUDIO
    assert message == {"event": "mark", "streamSid": stream_sid, "mark": {"name": GREETING_MARK}}
    # Caller audio is dropped.
    await communicator.send_to(text_data=frames.media())
    assert await communicator.receive_nothing(timeout=0.1)
    await communicator.disconnect()
