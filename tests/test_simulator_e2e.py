"""simulate_call against the real server: the TwiML after a stream, followed as Twilio does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from calls.devserver import RunningServer, migrate, running_daphne
from calls.fake_deepgram import FakeDeepgram, fake_audio, running_in_thread
from calls.simulator import simulate_call, twilio_signature
from tests.live import bridge_env

pytestmark = pytest.mark.e2e

API_TOKEN = "simulator-e2e-api-token"
AUTH_TOKEN = "simulator-e2e-auth-token"
PUBLIC = "https://public.example"
GREETING = "Hello, how are you today?"


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
        elif event == "mark" and message["mark"]["name"] == "greeting-end":
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
    assert report.path[-2:] == ("action POST /voice/after-stream: HTTP 200", "hangup")


class TwiMLFront:
    """A front for the real server that answers the first action with a new stream.

    Webhooks and WebSockets go through to daphne; the first `<Connect action>` request is
    answered with the server's own `/voice` TwiML for the same call, as a server handing a
    call to a new stream would answer.
    """

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.url = ""
        self._front: asyncio.Server | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TwiMLFront]:
        self._front = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._front.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            self._front.close()
            await self._front.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"upgrade: websocket" in head.lower():
                await self._tunnel(head, reader, writer)
            else:
                await self._answer(head, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines)
        )
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        path = request_line.split(" ")[1]
        form = dict(parse_qsl(body.decode()))
        self.requests.append((path, form))
        actions = sum(1 for p, _ in self.requests if p == "/voice/after-stream")
        # The server's answer for a new call leg of this CallSid; signed for the server's view.
        target = "/voice" if path == "/voice/after-stream" and actions == 1 else path
        forwarded = {"X-Twilio-Signature": headers.get("x-twilio-signature", "")}
        if target != path:
            forwarded["X-Twilio-Signature"] = twilio_signature(AUTH_TOKEN, PUBLIC + target, form)
        async with httpx.AsyncClient(base_url=self.server.url) as client:
            response = await client.post(target, data=form, headers=forwarded)
        payload = response.content
        writer.write(
            f"HTTP/1.1 {response.status_code} OK\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()

    async def _tunnel(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes until end of stream, then close the other side."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_a_connect_stream_answer_opens_a_second_stream_on_the_same_call_sid(
    server: RunningServer,
) -> None:
    hook = HangUpAfterGreeting(server)
    async with TwiMLFront(server).running() as front:
        report = await simulate_call(
            front.url,
            auth_token=AUTH_TOKEN,
            public_url=PUBLIC,
            until_mark=None,
            realtime_playback=False,
            on_event=hook.on_event,
            timeout=20,
        )
        await asyncio.gather(*hook.tasks)

    assert report.errors == (), (report.errors, server.log())
    first, second = report.streams
    assert first.stream_sid != second.stream_sid
    assert [path for path, _ in front.requests] == [
        "/voice",
        "/voice/after-stream",
        "/voice/after-stream",
    ]
    assert {form["CallSid"] for _, form in front.requests} == {report.call_sid}
    assert first.heard_bytes > 0 and second.heard_bytes > 0
    assert (first.ended_by, second.ended_by) == ("server", "server")
    assert hook.statuses == [202, 202]
    assert report.marks == ("greeting-end", "greeting-end")
    assert report.path[-1] == "hangup"
