"""The admin's live-call page: lists calls on the line and says, clears or hangs up."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import User
from django.core.cache import caches
from django.test import AsyncClient

from calls.live import presence
from calls.models import Call
from calls.twilio.protocol import GREETING_MARK
from devtools.fake_deepgram import FakeDeepgram, fake_audio
from tests import frames
from tests.streams import audio_until_mark, hang_up, open_live_stream, played, receive

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

LIVE_URL = "/admin/calls/call/live/"


@pytest.fixture(autouse=True)
def no_live_calls() -> None:
    caches[presence.CACHE_ALIAS].clear()


@pytest.fixture
async def admin_client() -> AsyncClient:
    user = await User.objects.acreate_superuser("admin", "admin@example.com", "pw-long-enough-1")
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def recorded(call_sid: str) -> None:
    """Wait for the call's row: rows are written in batches, moments after the call starts."""
    async with asyncio.timeout(5):
        while not await Call.objects.filter(call_sid=call_sid).aexists():
            await asyncio.sleep(0.01)


async def test_the_call_log_links_to_live_calls(admin_client: AsyncClient) -> None:
    page = await admin_client.get("/admin/calls/call/")
    assert page.status_code == 200
    assert LIVE_URL.encode() in page.content
    empty = await admin_client.get(LIVE_URL)
    assert b"No call is live right now." in empty.content


async def test_live_calls_are_listed_and_controlled(
    admin_client: AsyncClient, deepgram: FakeDeepgram
) -> None:
    communicator = await open_live_stream()
    await audio_until_mark(communicator)
    await played(communicator, GREETING_MARK)
    await recorded(frames.CALL_SID)
    page = await admin_client.get(LIVE_URL)
    assert frames.CALL_SID.encode() in page.content

    said = await admin_client.post(
        LIVE_URL,
        {"call_sid": frames.CALL_SID, "action": "say", "text": "Your table is ready.", "voice": ""},
    )
    assert said.status_code == 302
    assert await audio_until_mark(communicator) == (
        fake_audio("aura-asteria-en", "Your table is ready."),
        "say-1",
    )

    deepgram.hold()
    await admin_client.post(
        LIVE_URL, {"call_sid": frames.CALL_SID, "action": "say", "text": "Still there?"}
    )
    assert (await receive(communicator))["event"] == "media"
    await admin_client.post(LIVE_URL, {"call_sid": frames.CALL_SID, "action": "clear"})
    assert (await receive(communicator))["event"] == "clear"
    deepgram.release()

    await played(communicator, "say-1")
    await admin_client.post(LIVE_URL, {"call_sid": frames.CALL_SID, "action": "hangup"})
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()

    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    detail = await admin_client.get(f"/admin/calls/call/{call.pk}/change/")
    assert b"Your table is ready." in detail.content
    assert b"Still there?" in detail.content
    after = await admin_client.get(LIVE_URL)
    assert frames.CALL_SID.encode() not in after.content


async def test_a_call_that_ended_reports_an_error(admin_client: AsyncClient) -> None:
    response = await admin_client.post(
        LIVE_URL, {"call_sid": frames.CALL_SID, "action": "hangup"}, follow=True
    )
    assert f"call {frames.CALL_SID} is not live".encode() in response.content


async def test_staff_without_the_permission_cannot_control_calls(deepgram: FakeDeepgram) -> None:
    user = await User.objects.acreate_user("clerk", password="pw-long-enough-1", is_staff=True)
    client = AsyncClient()
    await client.aforce_login(user)
    assert (await client.get(LIVE_URL)).status_code == 403
    communicator = await open_live_stream()
    await audio_until_mark(communicator)
    response = await client.post(LIVE_URL, {"call_sid": frames.CALL_SID, "action": "hangup"})
    assert response.status_code == 403
    await hang_up(communicator)
