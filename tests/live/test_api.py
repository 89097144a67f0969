"""The HTTP call-control API: bearer token, JSON answers, and commands reaching a live call."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from django.core.cache import caches
from django.test import AsyncClient
from pytest_django.fixtures import Settings

from calls.live import commands, presence
from calls.models import CallUtterance
from calls.twilio.protocol import GREETING_MARK
from devtools.fake_deepgram import FakeDeepgram, fake_audio
from tests import frames
from tests.streams import audio_until_mark, open_live_stream, played, receive

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedASGIResponse as TestResponse

TOKEN = "test-api-token-0123456789"
URL = f"/api/calls/{frames.CALL_SID}"


@pytest.fixture(autouse=True)
def api_on(settings: Settings) -> None:
    settings.VOICEBRIDGE_API_TOKEN = TOKEN
    caches[presence.CACHE_ALIAS].clear()


def authorized(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(client: AsyncClient, path: str, body: object = None, **headers: str) -> TestResponse:
    if body is None:
        return await client.post(path, headers=headers)
    return await client.post(path, body, content_type="application/json", headers=headers)


async def test_the_api_is_off_without_a_token(
    async_client: AsyncClient, settings: Settings
) -> None:
    settings.VOICEBRIDGE_API_TOKEN = ""
    response = await post(async_client, f"{URL}/clear", **authorized())
    assert response.status_code == 403
    assert "VOICEBRIDGE_API_TOKEN" in response.json()["error"]


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", TOKEN])
async def test_a_missing_bearer_token_is_401(async_client: AsyncClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await post(async_client, f"{URL}/hangup", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in response.json()["error"]


async def test_a_wrong_token_is_403(async_client: AsyncClient) -> None:
    response = await post(async_client, f"{URL}/clear", **authorized("not-the-token"))
    assert response.status_code == 403
    assert response.json() == {"error": "wrong API token"}


async def test_only_post_is_allowed(async_client: AsyncClient) -> None:
    response = await async_client.get(f"{URL}/say", headers=authorized())
    assert response.status_code == 405
    assert response["Allow"] == "POST"


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        ["Your table is ready."],
        {},
        {"text": ""},
        {"text": 42},
        {"text": "Hi", "voice": "robot"},
        {"text": "Hi", "voice": ["aura-asteria-en"]},
        {"text": "Hi", "interupt": True},
        {"text": "Hi", "interrupt": "yes"},
        # What the call's record cannot store: PostgreSQL refuses NUL, UTF-8 lone surrogates.
        {"text": "Table\u0000ready"},
        {"text": "Table \ud800 ready"},
    ],
)
async def test_unusable_say_bodies_are_400(async_client: AsyncClient, body: object) -> None:
    response = await post(async_client, f"{URL}/say", body, **authorized())
    assert response.status_code == 400
    assert response.json()["error"]


@pytest.mark.parametrize("command", ["clear", "hangup"])
async def test_a_call_that_is_not_live_is_404(async_client: AsyncClient, command: str) -> None:
    response = await post(async_client, f"{URL}/{command}", **authorized())
    assert response.status_code == 404
    assert response.json() == {"error": f"call {frames.CALL_SID} is not live"}
    response = await post(async_client, f"{URL}/say", {"text": "Hello?"}, **authorized())
    assert response.status_code == 404


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_say_clear_and_hangup_reach_the_live_call(
    async_client: AsyncClient, deepgram: FakeDeepgram
) -> None:
    communicator = await open_live_stream()
    await audio_until_mark(communicator)
    await played(communicator, GREETING_MARK)

    response = await post(
        async_client,
        f"{URL}/say",
        {"text": "Your table is ready.", "voice": "aura-2-thalia-en"},
        **authorized(),
    )
    assert response.status_code == 202
    assert response.json() == {
        "call_sid": frames.CALL_SID,
        "command": "say",
        "status": "accepted",
    }
    assert await audio_until_mark(communicator) == (
        fake_audio("aura-2-thalia-en", "Your table is ready."),
        "say-1",
    )
    await played(communicator, "say-1")

    deepgram.hold()
    say: dict[str, object] = {"text": "One more thing."}
    assert (await post(async_client, f"{URL}/say", say, **authorized())).status_code == 202
    assert (await receive(communicator))["event"] == "media"
    say = {"text": "Sorry, wrong table.", "interrupt": True}
    assert (await post(async_client, f"{URL}/say", say, **authorized())).status_code == 202
    assert (await receive(communicator))["event"] == "clear"
    assert (await receive(communicator))["event"] == "media"
    assert (await post(async_client, f"{URL}/clear", **authorized())).status_code == 202
    assert (await receive(communicator))["event"] == "clear"
    deepgram.release()

    assert (await post(async_client, f"{URL}/hangup", **authorized())).status_code == 202
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()
    texts = [u.text async for u in CallUtterance.objects.filter(call__call_sid=frames.CALL_SID)]
    assert texts == ["Your table is ready.", "One more thing.", "Sorry, wrong table."]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_after_hangup_commands_are_409_and_past_the_queue_bound_429(
    async_client: AsyncClient, deepgram: FakeDeepgram
) -> None:
    deepgram.hold()
    communicator = await open_live_stream()
    assert (await receive(communicator))["event"] == "media"
    for n in range(commands.MAX_QUEUED_SAYS):
        response = await post(async_client, f"{URL}/say", {"text": f"Item {n}."}, **authorized())
        assert response.status_code == 202
    response = await post(async_client, f"{URL}/say", {"text": "One more."}, **authorized())
    assert response.status_code == 429
    assert "already queued" in response.json()["error"]

    assert (await post(async_client, f"{URL}/hangup", **authorized())).status_code == 202
    for command, body in (("say", {"text": "Still there?"}), ("clear", None), ("hangup", None)):
        response = await post(async_client, f"{URL}/{command}", body, **authorized())
        assert response.status_code == 409
        assert "hanging up or has ended" in response.json()["error"]
    await communicator.disconnect()
    deepgram.release()
