"""Drive a live call through the consumer, as Twilio would, for the call-control tests."""

from __future__ import annotations

import asyncio
import base64
import json

from channels.testing import WebsocketCommunicator

from calls.live import presence
from tests import frames
from voicebridge.asgi import application


async def open_live_stream(call_sid: str = frames.CALL_SID) -> WebsocketCommunicator:
    """Start a stream and return once the call is reachable by live control."""
    communicator = WebsocketCommunicator(application, "/twilio")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(text_data=frames.connected())
    await communicator.send_to(text_data=frames.start(call_sid=call_sid))
    async with asyncio.timeout(5):
        while not await presence.is_live(call_sid):
            await asyncio.sleep(0.01)
    return communicator


async def receive(communicator: WebsocketCommunicator) -> dict:
    return json.loads(await communicator.receive_from(timeout=5))


async def audio_until_mark(communicator: WebsocketCommunicator) -> tuple[bytes, str]:
    """Collect media payloads up to the next mark; return the audio and the mark's name."""
    audio = bytearray()
    while (message := await receive(communicator))["event"] == "media":
        audio += base64.b64decode(message["media"]["payload"])
    assert message["event"] == "mark", message
    return bytes(audio), message["mark"]["name"]


async def played(communicator: WebsocketCommunicator, mark: str) -> None:
    """Echo a mark, as Twilio does once the audio before it has played."""
    await communicator.send_to(text_data=frames.mark(mark))


async def hang_up(communicator: WebsocketCommunicator) -> None:
    """Send Twilio's stop and expect the server to close."""
    await communicator.send_to(text_data=frames.stop())
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()
