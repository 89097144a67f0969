"""simulate_call against the real server: the TwiML after a stream, followed as Twilio does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from calls.records.queries import FALLBACK_GREETING
from calls.twilio.protocol import GREETING_MARK
from calls.twilio.simulator import simulate_call
from devtools.devserver import RunningServer, migrate, running_daphne
from devtools.fake_deepgram import FakeDeepgram, fake_audio, running_in_thread
from tests.bridge import bridge_env

pytestmark = pytest.mark.e2e

API_TOKEN = "simulator-e2e-api-token"
AUTH_TOKEN = "simulator-e2e-auth-token"
PUBLIC = "https://public.example"
GREETING = FALLBACK_GREETING.text


@pytest.fixture(scope="module")
def deepgram() -> Iterator[FakeDeepgram]:
    with running_in_thread(chunk_size=400) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    deepgram: FakeDeepgram, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("simulator-e2e")
    env = bridge_env(
        tmp,
        deepgram.url,
        {
            "VOICEBRIDGE_API_TOKEN": API_TOKEN,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "PUBLIC_URL": PUBLIC,
        },
    )
    migrate(env)
    with running_daphne(env, tmp / "daphne.log") as running:
        yield running


class HangUpAfterGreeting:
    """An on_event hook that hangs each stream up through the live-call API after its greeting."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.call_sid = ""
        self.statuses: list[int] = []
        self.tasks: list[asyncio.Task[None]] = []

    def on_event(self, event: str, message: dict[str, Any]) -> None:
        if event == "stream-started":
            self.call_sid = message["callSid"]
        elif event == "mark" and message["mark"]["name"] == GREETING_MARK:
            self.tasks.append(asyncio.get_running_loop().create_task(self._hang_up()))

    async def _hang_up(self) -> None:
        async with httpx.AsyncClient(base_url=self.server.url) as client:
            response = await client.post(
                f"/api/calls/{self.call_sid}/hangup",
                headers={"Authorization": f"Bearer {API_TOKEN}"},
            )
        self.statuses.append(response.status_code)


async def test_a_stream_the_server_closes_leads_to_the_signed_action_request(
    server: RunningServer,
) -> None:
    hook = HangUpAfterGreeting(server)
    report = await simulate_call(
        server.url,
        auth_token=AUTH_TOKEN,
        public_url=PUBLIC,
        until_mark=None,
        realtime_playback=False,
        on_event=hook.on_event,
        timeout=15,
    )
    await asyncio.gather(*hook.tasks)

    assert hook.statuses == [202], server.log()
    # The server accepted every signed request, the action's included.
    assert report.errors == (), (report.errors, server.log())
    assert report.audio == fake_audio("aura-asteria-en", GREETING)
    (stream,) = report.streams
    assert (stream.ended_by, stream.close_code) == ("server", 1000)
    action, hangup = report.path[-2:]
    assert action.startswith("action POST /voice/after-stream?greeting=")
    assert (action.endswith(": HTTP 200"), hangup) == (True, "hangup")
