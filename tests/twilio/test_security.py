"""Who may connect: signed webhooks, signed stream handshakes and the per-call stream token."""

from __future__ import annotations

import base64
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from io import StringIO
from typing import TYPE_CHECKING, Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.test import Client
from pytest_django.fixtures import Settings

from calls.models import Call
from calls.records.queries import FALLBACK_GREETING
from calls.twilio import security
from calls.twilio.simulator import twilio_signature
from devtools.fake_deepgram import FakeDeepgram, fake_audio
from tests import frames
from voicebridge.asgi import application

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://public.example"
FORM = {"CallSid": frames.CALL_SID, "From": "+15550001111", "To": "+15550002222"}


@pytest.fixture
def signed(settings: Settings) -> None:
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_URL = PUBLIC
    settings.TWILIO_ALLOW_UNSIGNED = False


def post_voice(
    client: Client, url: str = "/voice", signature: str | None = None, **extra: Any
) -> TestResponse:
    if signature is not None:
        extra["HTTP_X_TWILIO_SIGNATURE"] = signature
    # The server sees plain http on 127.0.0.1, as behind a TLS proxy.
    return client.post(url, FORM, HTTP_HOST="127.0.0.1", **extra)


def stream_parameters(response: TestResponse) -> dict[str, str]:
    assert response.status_code == 200, response.content
    root = ET.fromstring(response.content)
    return {p.attrib["name"]: p.attrib["value"] for p in root.findall("Connect/Stream/Parameter")}


# The webhook -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_webhook_signed_over_the_public_url_is_answered_behind_a_proxy(
    client: Client, signed: None
) -> None:
    response = post_voice(client, signature=twilio_signature(TOKEN, PUBLIC + "/voice", FORM))
    root = ET.fromstring(response.content)
    assert response.status_code == 200
    stream, connect = root.find("Connect/Stream"), root.find("Connect")
    assert stream is not None and connect is not None
    assert stream.get("url") == "wss://public.example/twilio"
    assert connect.get("action", "").startswith(PUBLIC + "/voice/after-stream?")


@pytest.mark.django_db
def test_webhook_signature_covers_the_query_string(client: Client, signed: None) -> None:
    url = "/voice?line=sales"
    good = twilio_signature(TOKEN, PUBLIC + url, FORM)
    assert post_voice(client, url, signature=good).status_code == 200
    stripped = twilio_signature(TOKEN, PUBLIC + "/voice", FORM)
    assert post_voice(client, url, signature=stripped).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "not-a-signature",
        twilio_signature(TOKEN, "http://127.0.0.1/voice", FORM),  # the URL the server sees
        twilio_signature("another-token", PUBLIC + "/voice", FORM),
        twilio_signature(TOKEN, PUBLIC + "/voice", {**FORM, "To": "+19990000000"}),
    ],
    ids=["missing", "empty", "garbage", "server-url", "wrong-token", "other-params"],
)
def test_webhook_without_a_valid_signature_is_refused_and_logged_once(
    client: Client, signed: None, signature: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="calls"):
        response = post_voice(client, signature=signature)
    assert response.status_code == 403
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert frames.CALL_SID in refusals[0].getMessage()
    assert "X-Twilio-Signature" in refusals[0].getMessage()
    assert TOKEN not in caplog.text


@pytest.mark.django_db
def test_after_stream_webhook_is_signed_too(client: Client, signed: None) -> None:
    form = {"CallSid": frames.CALL_SID}
    url = "/voice/after-stream"
    assert client.post(url, form, HTTP_HOST="127.0.0.1").status_code == 403
    signature = twilio_signature(TOKEN, PUBLIC + url, form)
    response = client.post(url, form, HTTP_HOST="127.0.0.1", HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 200


@pytest.mark.django_db
def test_without_a_token_and_debug_off_everything_is_refused(
    client: Client, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.TWILIO_AUTH_TOKEN = ""
    settings.TWILIO_ALLOW_UNSIGNED = False
    with caplog.at_level(logging.WARNING, logger="calls"):
        assert client.post("/voice", FORM).status_code == 403
    assert "TWILIO_AUTH_TOKEN is not set" in caplog.text


def test_deploy_check_says_why_twilio_is_refused(settings: Settings) -> None:
    settings.TWILIO_AUTH_TOKEN = ""
    out = StringIO()
    with pytest.raises(Exception, match="calls.W002"):
        call_command("check", "--deploy", "--fail-level", "WARNING", stdout=out, stderr=out)


def test_deploy_check_wants_public_url_with_a_token(settings: Settings) -> None:
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_URL = ""
    with pytest.raises(Exception, match="calls.W003"):
        call_command("check", "--deploy", "--fail-level", "WARNING", stdout=StringIO())


def test_policy_follows_token_and_debug(settings: Settings) -> None:
    settings.TWILIO_AUTH_TOKEN = ""
    settings.TWILIO_ALLOW_UNSIGNED = True
    assert security.policy() == "allow"
    settings.TWILIO_ALLOW_UNSIGNED = False
    assert security.policy() == "refuse"
    settings.TWILIO_AUTH_TOKEN = TOKEN
    assert security.policy() == "verify"


# The WebSocket handshake ---------------------------------------------------------------------

stream_db = pytest.mark.django_db(transaction=True, serialized_rollback=True)


async def handshake(signature: str | None, path: str = "/twilio") -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1")]
    if signature is not None:
        headers.append((b"x-twilio-signature", signature.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


@stream_db
@pytest.mark.parametrize("url", ["wss://public.example/twilio", "wss://public.example/twilio/"])
async def test_handshake_signed_over_the_wss_stream_url_is_accepted(signed: None, url: str) -> None:
    communicator = await handshake(twilio_signature(TOKEN, url, {}))
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


@stream_db
@pytest.mark.parametrize(
    "signature",
    [
        None,
        "forged",
        twilio_signature(TOKEN, "https://public.example/twilio", {}),
        twilio_signature(TOKEN, "ws://127.0.0.1/twilio", {}),
        twilio_signature("another-token", "wss://public.example/twilio", {}),
    ],
    ids=["missing", "garbage", "https-url", "server-url", "wrong-token"],
)
async def test_handshake_without_a_valid_signature_is_refused_before_accept(
    signed: None, signature: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    communicator = await handshake(signature)
    with caplog.at_level(logging.WARNING, logger="calls"):
        connected, _ = await communicator.connect()
    assert not connected
    assert len([r for r in caplog.records if "handshake" in r.getMessage()]) == 1


# The stream token ----------------------------------------------------------------------------


async def signed_stream() -> WebsocketCommunicator:
    communicator = await handshake(twilio_signature(TOKEN, "wss://public.example/twilio", {}))
    connected, _ = await communicator.connect()
    assert connected
    return communicator


def voice_parameters(client: Client, call_sid: str = frames.CALL_SID) -> dict[str, str]:
    form = {**FORM, "CallSid": call_sid}
    signature = twilio_signature(TOKEN, PUBLIC + "/voice", form)
    return stream_parameters(
        client.post("/voice", form, HTTP_HOST="127.0.0.1", HTTP_X_TWILIO_SIGNATURE=signature)
    )


async def _async_voice_parameters(call_sid: str = frames.CALL_SID) -> dict[str, str]:
    return await sync_to_async(voice_parameters)(Client(), call_sid)


def tampered(params: dict[str, str], **changes: str) -> dict[str, str]:
    return {**params, **changes}


@stream_db
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p: {k: v for k, v in p.items() if k != "token"}, "no stream token"),
        (lambda p: tampered(p, token="1:2:3"), "forged"),
        (lambda p: tampered(p, token=p["token"][:-2] + "xx"), "forged"),
        (lambda p: tampered(p, greeting="999"), "another call or other parameters"),
        (lambda p: tampered(p, to="+19995550000"), "another call or other parameters"),
    ],
    ids=["missing", "garbage", "bad-signature", "other-greeting", "other-number"],
)
async def test_forged_start_gets_nothing(
    signed: None,
    deepgram: FakeDeepgram,
    caplog: pytest.LogCaptureFixture,
    change: Callable[[dict[str, str]], dict[str, str]],
    reason: str,
) -> None:
    params = change(await _async_voice_parameters())
    communicator = await signed_stream()
    with caplog.at_level(logging.WARNING, logger="calls"):
        await communicator.send_to(text_data=frames.start(params))
        assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()
    assert deepgram.requests == []
    refusals = [r.getMessage() for r in caplog.records if "start refused" in r.getMessage()]
    assert len(refusals) == 1
    assert reason in refusals[0] and frames.CALL_SID in refusals[0]
    assert not await Call.objects.filter(call_sid=frames.CALL_SID).aexists()


@stream_db
async def test_token_for_another_call_is_refused(signed: None, deepgram: FakeDeepgram) -> None:
    params = await _async_voice_parameters(call_sid="CA" + "7" * 32)
    communicator = await signed_stream()
    await communicator.send_to(text_data=frames.start(params))
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()
    assert deepgram.requests == []


@stream_db
async def test_replayed_start_gets_nothing(signed: None, deepgram: FakeDeepgram) -> None:
    params = await _async_voice_parameters()
    first = await signed_stream()
    await first.send_to(text_data=frames.start(params))
    assert json.loads(await first.receive_from(timeout=5))["event"] == "media"
    await first.disconnect()
    replay = await signed_stream()
    await replay.send_to(text_data=frames.start(params))
    assert (await replay.receive_output(timeout=5))["type"] == "websocket.close"
    await replay.disconnect()
    assert len(deepgram.requests) == 1


@stream_db
async def test_expired_token_is_refused(
    signed: None, deepgram: FakeDeepgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = await _async_voice_parameters()
    monkeypatch.setattr(security, "STREAM_TOKEN_MAX_AGE", -1)
    communicator = await signed_stream()
    await communicator.send_to(text_data=frames.start(params))
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()
    assert deepgram.requests == []


@stream_db
async def test_signed_call_plays_the_greeting(signed: None, deepgram: FakeDeepgram) -> None:
    params = await _async_voice_parameters()
    assert set(params) == {"greeting", "speech", "from", "to", "token"}
    assert len("token") + len(params["token"]) < 500  # Twilio's limit per <Parameter>
    communicator = await signed_stream()
    await communicator.send_to(text_data=frames.start(params))
    audio = bytearray()
    while (message := json.loads(await communicator.receive_from(timeout=5)))["event"] == "media":
        audio += base64.b64decode(message["media"]["payload"])
    assert bytes(audio) == fake_audio(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)
    await communicator.send_to(text_data=frames.stop())
    await communicator.receive_output(timeout=5)
    await communicator.disconnect()
    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.COMPLETED
    assert call.from_number == FORM["From"]
