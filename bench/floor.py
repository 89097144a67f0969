"""The floor: a bare ASGI WebSocket app that accepts a call and drops every frame it receives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

# Handed each text frame and the send channel; what it returns, if anything, is awaited in turn.
OnText = Callable[[str, Any], Awaitable[None] | None]


async def serve(scope: dict[str, Any], receive: Any, send: Any, on_text: OnText | None) -> None:
    """Accept a WebSocket and read it to the end, handing text frames to `on_text` if given."""
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.disconnect":
            return
        elif on_text is not None and (text := message.get("text")):
            reply = on_text(text, send)
            if reply is not None:
                await reply


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept a WebSocket and read it to the end, doing nothing with what arrives."""
    await serve(scope, receive, send, None)
