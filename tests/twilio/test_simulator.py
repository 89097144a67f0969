from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from calls.twilio.protocol import GREETING_MARK
from calls.twilio.simulator import CallReport, simulate_call, twilio_signature
from devtools.devserver import free_port

PUBLIC = "https://public.example"
STREAM_URL = "wss://public.example/twilio"
TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    "<Say>Connecting you.</Say><Say>Please hold.</Say>"
    f'<Connect><Stream url="{STREAM_URL}">'
    '<Parameter name="token" value="abc&amp;123" /><Parameter name="voice" value="aura-2" />'
    "</Stream></Connect><Say>Goodbye.</Say><Hangup /></Response>"
)
SID = re.compile(r"^(CA|AC|MZ)[0-9a-f]{32}$")


def b64(data: bytes) -> str:
    """Base64 text of some bytes."""
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Webhook:
    """One POST the fake server received."""

    path: str
    headers: dict[str, str]
    form: dict[str, str]
    method: str = "POST"


class Peer:
    """The server end of one Media Stream, recording what the simulator sends."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        self.closed = False
        self._changed = asyncio.Condition()

    async def pump(self) -> None:
        """Read every frame until the socket closes."""
        try:
            async for frame in self.ws:
                async with self._changed:
                    self.received.append(json.loads(frame))
                    self.arrived.append(time.monotonic())
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            async with self._changed:
                self.closed = True
                self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Return the first received message matching predicate, waiting up to 2 s."""

        def found() -> bool:
            return self.closed or any(predicate(m) for m in self.received)

        async with asyncio.timeout(2), self._changed:
            await self._changed.wait_for(found)
        return next(m for m in self.received if predicate(m))

    async def start(self) -> str:
        """Wait for `start` and return its streamSid."""
        message = await self.wait_for(lambda m: m["event"] == "start")
        return str(message["streamSid"])

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        """Send a JSON object, or a raw text or binary frame."""
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def play(self, stream_sid: str, audio: list[bytes], mark: str) -> None:
        """Send audio chunks followed by a mark, as voicebridge does."""
        for chunk in audio:
            await self.send(
                {"event": "media", "streamSid": stream_sid, "media": {"payload": b64(chunk)}}
            )
        await self.send({"event": "mark", "streamSid": stream_sid, "mark": {"name": mark}})

    def events(self) -> list[str]:
        """Names of the events received so far."""
        return [m["event"] for m in self.received]


Script = Callable[[Peer], Awaitable[None]]


class FakeVoicebridge:
    """A webhook plus a Media Stream server behind one port, like a TLS-terminating proxy."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        twiml: str | Mapping[str, str] = TWIML,
        twiml_status: int = 200,
        refuse: int | None = None,
    ) -> None:
        self.script = script
        self.twiml = twiml
        self.twiml_status = twiml_status
        self.refuse = refuse
        self.webhooks: list[Webhook] = []
        self.upgrades: list[Request] = []
        self.peers: list[Peer] = []
        self.failures: list[BaseException] = []
        self._connections: set[asyncio.Task[Any]] = set()
        self._front: asyncio.Server | None = None
        self._streams: Server | None = None
        self.base_url = ""

    async def __aenter__(self) -> FakeVoicebridge:
        self._streams = await serve(
            self._stream, "127.0.0.1", 0, process_request=self._upgrade, compression=None
        )
        self._front = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.base_url = f"http://127.0.0.1:{self._front.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._front is not None and self._streams is not None
        self._front.close()
        self._streams.close()
        await self._streams.wait_closed()
        await self._front.wait_closed()
        if self._connections:
            _, pending = await asyncio.wait(self._connections, timeout=1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
        if exc is None and self.failures:
            raise self.failures[0]

    @property
    def peer(self) -> Peer:
        """The only Media Stream of the call."""
        assert len(self.peers) == 1
        return self.peers[0]

    def _upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        """Record the handshake and refuse it when asked to."""
        self.upgrades.append(request)
        if self.refuse is not None:
            return connection.respond(HTTPStatus(self.refuse), "refused\n")
        return None

    async def _stream(self, ws: ServerConnection) -> None:
        """Run the test's script against one Media Stream."""
        peer = Peer(ws)
        self.peers.append(peer)
        pump = asyncio.create_task(peer.pump())
        try:
            if self.script is not None:
                await self.script(peer)
            await pump
        except Exception as exc:
            self.failures.append(exc)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer POSTs as the webhook; forward anything else to the stream server."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"POST ") or b"upgrade: websocket" not in head.lower():
                await self._webhook(head, reader, writer)
            else:
                await self._forward(head, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _webhook(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Record the webhook request and answer with the TwiML configured for its path."""
        request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        method, target = request_line.split(" ")[:2]
        self.webhooks.append(Webhook(target, headers, form, method))
        if isinstance(self.twiml, str):
            twiml, status = self.twiml, HTTPStatus(self.twiml_status)
        elif (path := target.partition("?")[0]) in self.twiml:
            twiml, status = self.twiml[path], HTTPStatus.OK
        else:
            twiml, status = "", HTTPStatus.NOT_FOUND
        payload = twiml.encode()
        writer.write(
            f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()

    async def _forward(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Relay a WebSocket connection byte for byte to the stream server."""
        assert self._streams is not None
        port = self._streams.sockets[0].getsockname()[1]
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        up_writer.write(head)
        await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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


def stream_messages(peer: Peer, event: str) -> list[dict[str, Any]]:
    """Messages of one event type the server received."""
    return [m for m in peer.received if m["event"] == event]


@pytest.mark.asyncio
async def test_happy_path() -> None:
    chunks = [bytes([0x10 + i]) * 400 for i in range(3)]
    seen: list[tuple[str, dict[str, Any]]] = []

    async def script(peer: Peer) -> None:
        sid = await peer.start()
        await peer.wait_for(lambda m: m["event"] == "media" and m["media"]["chunk"] == "3")
        await peer.play(sid, chunks, GREETING_MARK)

    async with FakeVoicebridge(script) as app:
        report = await simulate_call(
            app.base_url,
            call_sid="CA" + "0" * 32,
            extra_params={"CallerName": "Jane"},
            realtime_playback=False,
            on_event=lambda event, message: seen.append((event, message)),
            timeout=5,
        )

    assert report.ok, report.errors
    assert report.twiml_status == 200
    assert report.twiml == TWIML
    assert report.say == ("Connecting you.", "Please hold.")
    assert report.stream_url == STREAM_URL
    assert report.parameters == {"token": "abc&123", "voice": "aura-2"}
    assert report.after_connect == ("Say", "Hangup")
    assert report.handshake_status == 101
    assert report.audio == b"".join(chunks)
    assert report.heard == report.audio
    assert report.media_messages == 3
    assert report.first_audio_after is not None and 0 < report.first_audio_after < 1
    assert report.marks == (GREETING_MARK,)
    assert report.clears == 0
    assert report.close_code is None
    assert report.errors == ()
    assert report.call_sid == "CA" + "0" * 32
    assert SID.match(report.stream_sid) and report.stream_sid.startswith("MZ")
    assert [event for event, _ in seen] == [
        "stream-started",
        "media",
        "media",
        "media",
        "mark",
        "stream-stopped",
    ]
    assert seen[0][1] == {"streamSid": report.stream_sid, "callSid": report.call_sid, "index": 0}
    assert seen[-1][1] == {
        "streamSid": report.stream_sid,
        "callSid": report.call_sid,
        "index": 0,
        "closeCode": None,
        "endedBy": "caller",
    }
    (stream,) = report.streams
    assert stream.stream_sid == report.stream_sid
    assert (stream.heard_bytes, stream.marks, stream.ended_by) == (
        1200,
        (GREETING_MARK,),
        "caller",
    )
    assert report.path == (
        "webhook POST /voice: HTTP 200",
        'say "Connecting you."',
        'say "Please hold."',
        f"stream {report.stream_sid} 0.1 s of audio, marks {GREETING_MARK}; the caller hung up"
        f" after {stream.seconds:.1f} s",
    )

    (hook,) = app.webhooks
    assert hook.path == "/voice"
    assert "x-twilio-signature" not in hook.headers
    assert hook.form == {
        "CallSid": report.call_sid,
        "AccountSid": hook.form["AccountSid"],
        "From": "+15550199999",
        "To": "+15550100000",
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
        "Direction": "inbound",
        "CallerName": "Jane",
    }
    assert SID.match(hook.form["AccountSid"])
    (upgrade,) = app.upgrades
    assert upgrade.path == "/twilio"
    assert "X-Twilio-Signature" not in upgrade.headers

    peer = app.peer
    received = peer.received
    assert received[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert received[1] == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": hook.form["AccountSid"],
            "streamSid": report.stream_sid,
            "callSid": report.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": "abc&123", "voice": "aura-2"},
        },
        "streamSid": report.stream_sid,
    }
    assert [m["sequenceNumber"] for m in received[1:]] == [str(n) for n in range(1, len(received))]
    assert all(m["streamSid"] == report.stream_sid for m in received[1:])

    media = stream_messages(peer, "media")
    assert [m["media"]["chunk"] for m in media] == [str(n) for n in range(1, len(media) + 1)]
    assert [m["media"]["timestamp"] for m in media[:3]] == ["0", "20", "40"]
    assert media[0] == {
        "event": "media",
        "sequenceNumber": media[0]["sequenceNumber"],
        "media": {
            "track": "inbound",
            "chunk": "1",
            "timestamp": "0",
            "payload": b64(b"\xff" * 160),
        },
        "streamSid": report.stream_sid,
    }
    assert stream_messages(peer, "mark") == [
        {
            "event": "mark",
            "sequenceNumber": stream_messages(peer, "mark")[0]["sequenceNumber"],
            "streamSid": report.stream_sid,
            "mark": {"name": GREETING_MARK},
        }
    ]
    assert received[-1] == {
        "event": "stop",
        "sequenceNumber": str(len(received) - 1),
        "stop": {"accountSid": hook.form["AccountSid"], "callSid": report.call_sid},
        "streamSid": report.stream_sid,
    }
    assert peer.ws.close_code == 1000


@pytest.mark.asyncio
async def test_signatures_verify_over_the_public_urls() -> None:
    async def script(peer: Peer) -> None:
        sid = await peer.start()
        await peer.play(sid, [b"\x00" * 160], GREETING_MARK)

    async with FakeVoicebridge(script) as app:
        report = await simulate_call(
            app.base_url,
            auth_token="s3cret",
            public_url=PUBLIC + "/",
            media_interval=0,
            realtime_playback=False,
            timeout=5,
        )

    assert report.ok, report.errors
    validator = RequestValidator("s3cret")
    (hook,) = app.webhooks
    signature = hook.headers["x-twilio-signature"]
    assert validator.validate(PUBLIC + "/voice", hook.form, signature)
    assert not validator.validate(app.base_url + "/voice", hook.form, signature)
    assert not RequestValidator("other").validate(PUBLIC + "/voice", hook.form, signature)
    ws_signature = app.upgrades[0].headers["X-Twilio-Signature"]
    assert validator.validate(STREAM_URL, {}, ws_signature)
    assert not validator.validate(PUBLIC + "/twilio", {}, ws_signature)


def test_twilio_signature_matches_the_documented_vector() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675310",
        "Digits": "1234",
        "From": "+14158675310",
        "To": "+18005551212",
    }
    url = "https://example.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "L/OH5YylLD5NRKLltdqwSvS0BnU="
    assert twilio_signature("12345", STREAM_URL) == twilio_signature("12345", STREAM_URL, {})


@pytest.mark.asyncio
async def test_dtmf_then_clear_drops_unplayed_audio_from_heard() -> None:
    short = b"\x01" * 800  # 0.1 s
    long = b"\x02" * 8000  # 1 s, cut off by the clear
    timings: dict[str, float] = {}

    async def script(peer: Peer) -> None:
        sid = await peer.start()
        timings["first_sent"] = time.monotonic()
        await peer.play(sid, [short], "first")
        await peer.wait_for(lambda m: m["event"] == "mark")
        timings["first_echo"] = peer.arrived[peer.events().index("mark")]
        await peer.play(sid, [long], GREETING_MARK)
        await peer.wait_for(lambda m: m["event"] == "dtmf")
        await peer.send({"event": "clear", "streamSid": sid})

    async with FakeVoicebridge(script) as app:
        started = time.monotonic()
        report = await simulate_call(app.base_url, dtmf=[(0.25, "7")], media_interval=0, timeout=5)
        elapsed = time.monotonic() - started

    assert report.errors == ()
    assert elapsed < 1.0
    assert timings["first_echo"] - timings["first_sent"] >= 0.09
    assert report.audio == short + long
    assert report.clears == 1
    assert report.marks == ("first", GREETING_MARK)
    # About 0.15 s of the long utterance played before the key press and the clear.
    played = len(report.heard) - len(short)
    assert 0 < played < 4000
    assert report.heard == report.audio[: len(report.heard)]
    assert report.ok

    peer = app.peer
    (dtmf,) = stream_messages(peer, "dtmf")
    assert dtmf == {
        "event": "dtmf",
        "streamSid": report.stream_sid,
        "sequenceNumber": dtmf["sequenceNumber"],
        "dtmf": {"track": "inbound_track", "digit": "7"},
    }
    assert [m["mark"]["name"] for m in stream_messages(peer, "mark")] == ["first", GREETING_MARK]
    assert peer.events()[-3:] == ["dtmf", "mark", "stop"]


@pytest.mark.asyncio
async def test_hang_up_cuts_off_audio_still_buffered() -> None:
    async def script(peer: Peer) -> None:
        sid = await peer.start()
        await peer.play(sid, [b"\x03" * 8000], GREETING_MARK)

    async with FakeVoicebridge(script) as app:
        report = await simulate_call(app.base_url, hang_up_after=0.2, media_interval=0, timeout=5)

    assert report.errors == ()
    assert len(report.audio) == 8000
    assert 0 < len(report.heard) <= 2000
    assert app.peer.events()[-1] == "stop"
    assert "mark" not in app.peer.events()


@pytest.mark.asyncio
async def test_protocol_violations_are_reported_and_ignored() -> None:
    async def script(peer: Peer) -> None:
        sid = await peer.start()
        good = {"event": "media", "streamSid": sid, "media": {"payload": b64(b"\x05" * 160)}}
        await peer.send({**good, "streamSid": "MZ" + "f" * 32})
        await peer.send({**good, "sequenceNumber": "1"})
        await peer.send({**good, "media": {"payload": b64(b"\x06"), "track": "outbound"}})
        await peer.send({**good, "media": {"payload": "not base64!"}})
        await peer.send(b"\x07" * 160)
        await peer.send("{not json")
        await peer.send({"event": "hello", "streamSid": sid})
        await peer.send({"event": "mark", "streamSid": sid, "mark": {}})
        await peer.send({"event": "clear"})
        await peer.send({**good, "streamSid": "MZ" + "f" * 32})
        await peer.send({**good, "media": {"payload": b64(b"RIFF\x24\x00\x00\x00WAVE")}})
        await peer.send(good)
        await peer.send({"event": "mark", "streamSid": sid, "mark": {"name": GREETING_MARK}})

    async with FakeVoicebridge(script) as app:
        report = await simulate_call(
            app.base_url, media_interval=0, realtime_playback=False, timeout=5
        )

    assert report.errors == (
        "31951 wrong streamSid in media: 'MZ" + "f" * 32 + "' (x2)",
        "31951 invalid media message: extra sequenceNumber",
        "31951 invalid media message: extra media.track",
        "31951 invalid media message: payload is not valid base64",
        "31950 binary frame from server",
        "31951 invalid JSON from server",
        "31951 unknown event 'hello' from server",
        "31951 invalid mark message: missing mark.name",
        "31951 invalid clear message: missing streamSid",
        "31924 media payload starts with an audio file header",
    )
    assert not report.ok
    assert report.audio == b"RIFF\x24\x00\x00\x00WAVE" + b"\x05" * 160
    assert report.media_messages == 2
    assert report.marks == (GREETING_MARK,)
    assert report.clears == 0
    assert app.peer.events()[-2:] == ["mark", "stop"]


@pytest.mark.asyncio
async def test_refused_handshake() -> None:
    async with FakeVoicebridge(refuse=403) as app:
        report = await simulate_call(app.base_url, auth_token="wrong", timeout=5)

    assert report.handshake_status == 403
    assert report.twiml_status == 200
    assert report.errors == ("31920 handshake refused with HTTP 403",)
    assert report.stream_sid == ""
    assert report.audio == b""
    assert not report.ok
    assert app.peers == []


@pytest.mark.asyncio
async def test_server_close_is_recorded() -> None:
    async def script(peer: Peer) -> None:
        sid = await peer.start()
        await peer.play(sid, [b"\x08" * 160], "not-the-end")
        await peer.wait_for(lambda m: m["event"] == "mark")
        await peer.ws.close(4001, "bye")

    async with FakeVoicebridge(script) as app:
        report = await simulate_call(app.base_url, media_interval=0, realtime_playback=False)

    assert report.close_code == 4001
    assert report.errors == ()
    assert report.ok
    assert report.marks == ("not-the-end",)
    assert "stop" not in app.peer.events()


@pytest.mark.asyncio
async def test_timeout_ends_the_call_with_an_error() -> None:
    async with FakeVoicebridge() as app:
        report = await simulate_call(app.base_url, timeout=0.3)

    assert report.errors == ("timeout: the call did not end in time",)
    assert report.handshake_status == 101
    assert report.close_code is None
    assert stream_messages(app.peer, "media")
    assert app.peer.events()[-1] == "stop"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "twiml", "error"),
    [
        (500, TWIML, "webhook answered HTTP 500"),
        (200, "<Response><Say>hi</Response>", "TwiML is not valid XML"),
        (200, "<Response><Say>hi</Say><Hangup/></Response>", "TwiML has no <Connect><Stream>"),
    ],
)
async def test_webhook_failures_stop_the_call(status: int, twiml: str, error: str) -> None:
    async with FakeVoicebridge(twiml=twiml, twiml_status=status) as app:
        report: CallReport = await simulate_call(app.base_url, timeout=5)

    assert report.twiml_status == status
    assert report.twiml == twiml
    assert len(report.errors) == 1 and report.errors[0].startswith(error)
    assert report.handshake_status is None
    assert not report.ok
    assert app.upgrades == []


@pytest.mark.asyncio
async def test_unreachable_server() -> None:
    async with FakeVoicebridge() as app:
        base_url = app.base_url
    report = await simulate_call(base_url, timeout=2)
    assert report.twiml_status == 0
    assert report.errors[0].startswith("webhook request failed")
    assert not report.ok


def connect_twiml(action: str, leg: str, *, say: str = "") -> str:
    """A document that opens a stream with one Parameter and names an action."""
    spoken = f"<Say>{say}</Say>" if say else ""
    return (
        f'<Response>{spoken}<Connect action="{action}"><Stream url="{STREAM_URL}">'
        f'<Parameter name="leg" value="{leg}" /></Stream></Connect></Response>'
    )


async def close_after_a_mark(peer: Peer) -> None:
    """Play a little audio and a mark, then close the stream once the mark has been echoed."""
    sid = await peer.start()
    await peer.play(sid, [b"\x11" * 160], "played")
    await peer.wait_for(lambda m: m["event"] == "mark")
    await peer.ws.close(1000)


@pytest.mark.asyncio
async def test_a_stream_closed_by_the_server_leads_to_the_signed_action_request() -> None:
    answers = {
        "/voice": connect_twiml("/voice/after-stream?step=1", "1", say="Connecting you."),
        "/voice/after-stream": "<Response><Say>Goodbye.</Say><Hangup/><Say>Never.</Say></Response>",
    }
    async with FakeVoicebridge(close_after_a_mark, twiml=answers) as app:
        report = await simulate_call(
            app.base_url,
            auth_token="s3cret",
            public_url=PUBLIC,
            media_interval=0,
            realtime_playback=False,
            timeout=5,
        )

    assert report.errors == ()
    assert report.say == ("Connecting you.", "Goodbye.")
    assert report.close_code == 1000
    (stream,) = report.streams
    assert (stream.ended_by, stream.close_code, stream.marks) == ("server", 1000, ("played",))
    assert report.path == (
        "webhook POST /voice: HTTP 200",
        'say "Connecting you."',
        f"stream {report.stream_sid} 0.0 s of audio, marks played; closed by the server (1000)"
        f" after {stream.seconds:.1f} s",
        "action POST /voice/after-stream?step=1: HTTP 200",
        'say "Goodbye."',
        "hangup",
    )
    hook, action = app.webhooks
    assert (action.method, action.path) == ("POST", "/voice/after-stream?step=1")
    assert action.form == {**hook.form, "CallStatus": "in-progress"}
    assert set(action.form) == {
        "CallSid",
        "AccountSid",
        "From",
        "To",
        "CallStatus",
        "ApiVersion",
        "Direction",
    }
    validator = RequestValidator("s3cret")
    signature = action.headers["x-twilio-signature"]
    assert validator.validate(PUBLIC + "/voice/after-stream?step=1", action.form, signature)
    assert not validator.validate(PUBLIC + "/voice/after-stream", action.form, signature)


@pytest.mark.asyncio
async def test_a_connect_stream_answer_opens_a_second_stream_on_the_same_call() -> None:
    seen: list[tuple[str, str]] = []

    async def script(peer: Peer) -> None:
        if len(app.peers) == 1:
            await close_after_a_mark(peer)
        else:
            sid = await peer.start()
            await peer.play(sid, [b"\x22" * 320], GREETING_MARK)

    answers = {
        "/voice": connect_twiml("/voice/after-stream", "1"),
        "/voice/after-stream": connect_twiml(PUBLIC + "/voice/after-second", "2"),
        "/voice/after-second": "<Response><Hangup/></Response>",
    }
    async with FakeVoicebridge(script, twiml=answers) as app:
        report = await simulate_call(
            app.base_url,
            media_interval=0,
            realtime_playback=False,
            on_event=lambda event, message: seen.append((event, message.get("streamSid", ""))),
            timeout=5,
        )

    assert report.errors == ()
    first, second = report.streams
    assert first.stream_sid != second.stream_sid
    assert (first.parameters, second.parameters) == ({"leg": "1"}, {"leg": "2"})
    assert (first.ended_by, second.ended_by) == ("server", "caller")
    assert report.audio == b"\x11" * 160 + b"\x22" * 320
    assert report.marks == ("played", GREETING_MARK)
    assert report.stream_sid == first.stream_sid and report.parameters == {"leg": "1"}
    assert report.close_code is None
    # The caller hung up on the second stream: its action is never requested.
    assert [hook.path for hook in app.webhooks] == ["/voice", "/voice/after-stream"]
    starts = [stream_messages(peer, "start")[0]["start"] for peer in app.peers]
    assert [start["callSid"] for start in starts] == [report.call_sid] * 2
    assert [start["streamSid"] for start in starts] == [first.stream_sid, second.stream_sid]
    assert [start["customParameters"] for start in starts] == [{"leg": "1"}, {"leg": "2"}]
    assert ("stream-started", second.stream_sid) in seen
    assert ("media", second.stream_sid) in seen
    assert report.path[-1].startswith(f"stream {second.stream_sid} 0.0 s of audio")


@pytest.mark.asyncio
async def test_redirect_and_pause_are_followed_and_dial_ends_the_simulation() -> None:
    answers = {
        "/voice": connect_twiml("/voice/after-stream", "1"),
        "/voice/after-stream": (
            '<Response><Pause length="0.1"/>'
            f'<Redirect method="GET">{PUBLIC}/next?from=menu</Redirect></Response>'
        ),
        "/next": "<Response><Say>Transferring.</Say><Dial>+15550100009</Dial><Say>No.</Say>"
        "</Response>",
    }
    async with FakeVoicebridge(close_after_a_mark, twiml=answers) as app:
        started = time.monotonic()
        report = await simulate_call(
            app.base_url,
            auth_token="s3cret",
            public_url=PUBLIC,
            media_interval=0,
            realtime_playback=False,
            timeout=5,
        )
        elapsed = time.monotonic() - started

    assert report.errors == ()
    assert elapsed >= 0.1
    assert report.say == ("Transferring.",)
    assert report.path[-5:] == (
        "action POST /voice/after-stream: HTTP 200",
        "pause 0.1 s",
        "redirect GET /next: HTTP 200",
        'say "Transferring."',
        "<Dial> (not simulated: the call ends here)",
    )
    redirect = app.webhooks[-1]
    assert redirect.method == "GET" and redirect.form == {}
    url = PUBLIC + redirect.path
    query = dict(parse_qsl(url.partition("?")[2]))
    assert query == {**app.webhooks[0].form, "CallStatus": "in-progress", "from": "menu"}
    assert RequestValidator("s3cret").validate(url, {}, redirect.headers["x-twilio-signature"])


@pytest.mark.asyncio
async def test_a_dropped_connection_also_leads_to_the_action() -> None:
    async def script(peer: Peer) -> None:
        await peer.start()
        peer.ws.transport.abort()

    answers = {
        "/voice": connect_twiml("/voice/after-stream", "1"),
        "/voice/after-stream": "<Response><Hangup/></Response>",
    }
    async with FakeVoicebridge(script, twiml=answers) as app:
        report = await simulate_call(app.base_url, media_interval=0, timeout=5)

    (stream,) = report.streams
    assert (stream.ended_by, stream.close_code) == ("dropped", 1006)
    assert report.path[-2:] == ("action POST /voice/after-stream: HTTP 200", "hangup")
    assert len(app.webhooks) == 2


@pytest.mark.asyncio
async def test_a_caller_hanging_up_requests_nothing_more() -> None:
    answers = {"/voice": connect_twiml("/voice/after-stream", "1")}
    async with FakeVoicebridge(twiml=answers) as app:
        report = await simulate_call(app.base_url, until_mark=None, hang_up_after=0.3, timeout=5)

    assert report.errors == ()
    (stream,) = report.streams
    assert stream.ended_by == "caller" and 0.3 <= stream.seconds < 1
    assert [hook.path for hook in app.webhooks] == ["/voice"]
    assert stream_messages(app.peer, "media")
    assert app.peer.events()[-1] == "stop"


@pytest.mark.asyncio
async def test_twiml_that_loops_is_given_up_after_a_bound() -> None:
    answers = {
        "/voice": connect_twiml("/voice/after-stream", "1"),
        "/voice/after-stream": "<Response><Redirect>/voice/after-stream</Redirect></Response>",
    }
    async with FakeVoicebridge(close_after_a_mark, twiml=answers) as app:
        report = await simulate_call(
            app.base_url, media_interval=0, realtime_playback=False, timeout=5
        )

    assert report.errors == ("more than 10 TwiML requests after the webhook",)
    assert len(app.webhooks) == 11


@pytest.mark.asyncio
async def test_requests_fail_over_to_a_server_that_answers() -> None:
    answers = {
        "/voice": connect_twiml("/voice/after-stream", "1"),
        "/voice/after-stream": "<Response><Hangup/></Response>",
    }
    dead = f"http://127.0.0.1:{free_port()}"
    async with FakeVoicebridge(close_after_a_mark, twiml=answers) as app:
        report = await simulate_call(
            dead, failover=[app.base_url], media_interval=0, realtime_playback=False, timeout=5
        )

    assert report.errors == ()
    assert [hook.path for hook in app.webhooks] == ["/voice", "/voice/after-stream"]
    assert len(report.streams) == 1 and report.path[-1] == "hangup"
