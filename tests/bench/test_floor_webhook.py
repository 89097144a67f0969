"""The floors answer the voice webhook as a server must: signed, with TwiML opening a stream."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator

from bench import floor
from bench.floor_webhook import AUTH_TOKEN_VARIABLE
from calls.twilio.simulator import twilio_signature

TOKEN = "floor-test-token"
FORM = {"CallSid": "CA" + "1" * 32, "From": "+15550001111", "To": "+15550002222"}


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTH_TOKEN_VARIABLE, TOKEN)


def webhook(signature: str) -> HttpCommunicator:
    return HttpCommunicator(
        floor.application,
        "POST",
        "/voice",
        body=urlencode(FORM).encode(),
        headers=[
            (b"host", b"127.0.0.1:9"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"x-twilio-signature", signature.encode()),
        ],
    )


async def test_a_signed_webhook_is_answered_with_a_stream_carrying_the_numbers() -> None:
    signature = twilio_signature(TOKEN, "http://127.0.0.1:9/voice", FORM)
    response = await webhook(signature).get_response()
    assert response["status"] == 200
    body = response["body"].decode()
    assert re.search(r'<Stream url="ws://127\.0\.0\.1:9/twilio">', body)
    assert '<Parameter name="to" value="+15550002222"/>' in body


async def test_an_unsigned_webhook_and_handshake_are_refused() -> None:
    response = await webhook("forged").get_response()
    assert response["status"] == 403
    communicator = WebsocketCommunicator(
        floor.application, "/twilio", headers=[(b"host", b"127.0.0.1:9")]
    )
    connected, _ = await communicator.connect()
    assert not connected
