"""The floor: a bare ASGI app that answers the voice webhook, accepts a call, drops its frames."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bench.floor_webhook import answer, checking, header, signed

# Handed each text frame and the send channel; what it returns, if anything, is awaited in turn.
OnText = Callable[[str, Any], Awaitable[None] | None]


async def serve(scope: dict[str, Any], receive: Any, send: Any, on_text: OnText | None) -> None:
    """Answer the webhook, or accept a signed WebSocket and read it to the end, handing text
    frames to `on_text` if given."""
    if scope["type"] == "http":
        await answer(scope, receive, send)
        return
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            url = f"ws://{header(scope, b'host')}{scope['path']}"
            # Unsigned handshakes pass when no token is set, as in the floors' unit tests.
            if signed(scope, url, {}) or not checking():
                await send({"type": "websocket.accept"})
            else:
                await send({"type": "websocket.close", "code": 1008})
                return
        elif message["type"] == "websocket.disconnect":
            return
        elif on_text is not None and (text := message.get("text")):
            reply = on_text(text, send)
            if reply is not None:
                await reply


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer the webhook, accept a call and read it to the end, doing nothing with its frames."""
    await serve(scope, receive, send, None)
