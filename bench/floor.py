"""The floor: a bare ASGI WebSocket app that accepts a call and drops every frame it receives."""

from __future__ import annotations

from typing import Any


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept a WebSocket and read it to the end, doing nothing with what arrives."""
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.disconnect":
            return
