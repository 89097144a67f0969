"""Twilio's webhooks served over ASGI by the one-hop handler, other paths by Django's own."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from channels.testing import HttpCommunicator

from calls.server.webhook_http import WebhookHandler, route_webhooks

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


async def _post(app: Any, path: str, body: bytes) -> dict[str, Any]:
    communicator = HttpCommunicator(
        app,
        "POST",
        path,
        body=body,
        headers=[
            (b"host", b"testserver"),
            (b"content-type", b"application/x-www-form-urlencoded"),
        ],
    )
    return await communicator.get_response()


async def test_voice_answers_twiml_that_streams() -> None:
    response = await _post(WebhookHandler(), "/voice", b"CallSid=CA1&From=%2B1555&To=%2B1666")
    assert response["status"] == 200
    assert dict(response["headers"])[b"Content-Type"].startswith(b"text/xml")
    stream = ET.fromstring(response["body"]).find("Connect/Stream")
    assert stream is not None
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params["to"] == "+1666"


async def test_an_unknown_path_is_django_404() -> None:
    response = await _post(WebhookHandler(), "/nowhere", b"")
    assert response["status"] == 404


async def test_only_the_named_paths_go_to_the_webhook_app() -> None:
    served: list[str] = []

    def app(name: str) -> Any:
        async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
            served.append(name)
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        return serve

    routed = route_webhooks(["/voice"], app("webhooks"), app("others"))
    await _post(routed, "/voice", b"")
    await _post(routed, "/admin/", b"")
    assert served == ["webhooks", "others"]
