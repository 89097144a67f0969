from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import secrets
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.protocol import State

from calls.audio import MULAW_SILENCE, SAMPLE_RATE

__all__ = ["CallReport", "simulate_call", "twilio_signature"]

INBOUND_CHUNK = bytes([MULAW_SILENCE]) * 160
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_CLOSE_TIMEOUT = 5.0
_ABNORMAL_CLOSURE = 1006
# Container headers that mean the server forgot Deepgram's container=none (Twilio plays noise).
_FILE_HEADERS = (b"RIFF", b"OggS", b"fLaC", b"ID3")

EventHook = Callable[[str, dict[str, Any]], None]

_SERVER_SHAPES: dict[str, tuple[frozenset[str], str | None, frozenset[str]]] = {
    # event: (top-level keys, nested object key, nested keys)
    "media": (frozenset({"event", "streamSid", "media"}), "media", frozenset({"payload"})),
    "mark": (frozenset({"event", "streamSid", "mark"}), "mark", frozenset({"name"})),
    "clear": (frozenset({"event", "streamSid"}), None, frozenset()),
}


@dataclass(frozen=True)
class CallReport:
    """What one simulated Twilio call saw."""

    twiml_status: int
    twiml: str
    say: tuple[str, ...]
    stream_url: str
    parameters: dict[str, str]
    after_connect: tuple[str, ...]
    handshake_status: int | None
    audio: bytes
    heard: bytes
    media_messages: int
    first_audio_after: float | None
    marks: tuple[str, ...]
    clears: int
    close_code: int | None
    errors: tuple[str, ...]
    call_sid: str
    stream_sid: str

    @property
    def ok(self) -> bool:
        """Whether the call connected, some audio was heard and nothing went wrong."""
        return (
            self.twiml_status == 200
            and self.handshake_status == 101
            and len(self.heard) > 0
            and not self.errors
        )


@dataclass(frozen=True)
class _TwiML:
    """The parts of a voice webhook answer that a call follows."""

    say: tuple[str, ...]
    stream_url: str
    parameters: dict[str, str]
    after_connect: tuple[str, ...]


@dataclass
class _Outcome:
    """Mutable collector turned into a CallReport at the end."""

    call_sid: str
    twiml_status: int = 0
    twiml_body: str = ""
    twiml: _TwiML | None = None
    handshake_status: int | None = None
    stream_sid: str = ""
    close_code: int | None = None
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, message: str) -> None:
        """Record a problem, counting repeats instead of listing them again."""
        self.errors[message] = self.errors.get(message, 0) + 1

    def report(self, session: _Session | None = None) -> CallReport:
        """Freeze what was collected."""
        twiml = self.twiml or _TwiML((), "", {}, ())
        return CallReport(
            twiml_status=self.twiml_status,
            twiml=self.twiml_body,
            say=twiml.say,
            stream_url=twiml.stream_url,
            parameters=dict(twiml.parameters),
            after_connect=twiml.after_connect,
            handshake_status=self.handshake_status,
            audio=bytes(session.audio) if session else b"",
            heard=bytes(session.heard) if session else b"",
            media_messages=session.media_messages if session else 0,
            first_audio_after=session.first_audio_after if session else None,
            marks=tuple(session.marks) if session else (),
            clears=session.clears if session else 0,
            close_code=self.close_code,
            errors=tuple(
                message if count == 1 else f"{message} (x{count})"
                for message, count in self.errors.items()
            ),
            call_sid=self.call_sid,
            stream_sid=self.stream_sid,
        )


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """Return the X-Twilio-Signature Twilio would send for this URL and form."""
    return RequestValidator(auth_token).compute_signature(url, dict(params or {}))


def _sid(prefix: str) -> str:
    """Return a random Twilio-style SID."""
    return prefix + secrets.token_hex(16)


def _parse_twiml(body: str) -> _TwiML:
    """Extract the verbs a <Connect><Stream> call uses; raise ValueError if there are none."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"TwiML is not valid XML: {exc}") from exc
    if root.tag != "Response":
        raise ValueError(f"TwiML root is <{root.tag}>, not <Response>")
    say: list[str] = []
    after: list[str] = []
    stream: ET.Element | None = None
    for verb in root:
        if stream is not None:
            after.append(verb.tag)
        elif verb.tag == "Say":
            say.append(verb.text or "")
        elif verb.tag == "Connect":
            stream = verb.find("Stream")
            if stream is None:
                raise ValueError("TwiML <Connect> has no <Stream>")
    if stream is None:
        raise ValueError("TwiML has no <Connect><Stream>")
    url = stream.get("url", "")
    if not url:
        raise ValueError("TwiML <Stream> has no url")
    parameters = {
        parameter.get("name", ""): parameter.get("value", "")
        for parameter in stream.findall("Parameter")
    }
    return _TwiML(tuple(say), url, parameters, tuple(after))


def _socket_url(base_url: str, stream_url: str) -> str:
    """Map the public Stream URL onto the server that really listens, as a TLS proxy would."""
    base = urlsplit(base_url)
    stream = urlsplit(stream_url)
    scheme = "wss" if base.scheme in ("https", "wss") else "ws"
    return urlunsplit((scheme, base.netloc, stream.path or "/", stream.query, ""))


def _json(message: dict[str, Any]) -> str:
    """Serialise an outbound message compactly, as Twilio does."""
    return json.dumps(message, separators=(",", ":"))


class _Session:
    """The WebSocket half of a call: Twilio's sender, receiver and playback buffer."""

    def __init__(
        self,
        ws: ClientConnection,
        outcome: _Outcome,
        *,
        account_sid: str,
        stream_sid: str,
        parameters: Mapping[str, str],
        dtmf: Sequence[tuple[float, str]],
        until_mark: str | None,
        media_interval: float,
        realtime_playback: bool,
        on_event: EventHook | None,
    ) -> None:
        self.ws = ws
        self.outcome = outcome
        self.account_sid = account_sid
        self.stream_sid = stream_sid
        self.parameters = dict(parameters)
        self.dtmf = sorted(dtmf, key=lambda press: press[0])
        self.until_mark = until_mark
        self.media_interval = media_interval
        self.realtime_playback = realtime_playback
        self.on_event = on_event
        self.loop = asyncio.get_running_loop()

        self.audio = bytearray()
        self.heard = bytearray()
        self.media_messages = 0
        self.first_audio_after: float | None = None
        self.marks: list[str] = []
        self.clears = 0

        self.started_at = 0.0
        self.ended = asyncio.Event()
        self.sequence = 1
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.play_end = 0.0
        self.pending_marks: deque[tuple[float, str]] = deque()
        self.mark_timer: asyncio.TimerHandle | None = None
        self.stopping = False

    async def run(self, hang_up_after: float | None, deadline: float) -> None:
        """Play the call from `connected` to `stop`, then close the socket."""
        reader: asyncio.Task[None] | None = None
        writer: asyncio.Task[None] | None = None
        senders: list[asyncio.Task[None]] = []
        try:
            await self.ws.send(
                _json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            )
            await self.ws.send(_json(self._start_message()))
            self.started_at = self.loop.time()
            self.play_end = self.started_at
            reader = asyncio.create_task(self._read())
            writer = asyncio.create_task(self._write())
            if self.media_interval > 0:
                senders.append(asyncio.create_task(self._send_media()))
            if self.dtmf:
                senders.append(asyncio.create_task(self._send_dtmf()))
            await self._wait_for_end(hang_up_after, deadline)
        except ConnectionClosed:
            pass
        finally:
            await self._finish(reader, writer, senders)

    def _start_message(self) -> dict[str, Any]:
        """Build the `start` message exactly in Twilio's shape."""
        return {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.outcome.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": self.parameters,
            },
            "streamSid": self.stream_sid,
        }

    async def _wait_for_end(self, hang_up_after: float | None, deadline: float) -> None:
        """Return when the call should end; record an error if that is the overall timeout."""
        hang_up_at = math.inf if hang_up_after is None else self.started_at + hang_up_after
        wait_until = min(hang_up_at, deadline)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(None if math.isinf(wait_until) else wait_until):
                await self.ended.wait()
                return
        if hang_up_at > deadline:
            self.outcome.error("timeout: the call did not end in time")

    async def _finish(
        self,
        reader: asyncio.Task[None] | None,
        writer: asyncio.Task[None] | None,
        senders: list[asyncio.Task[None]],
    ) -> None:
        """Send `stop`, close the socket and leave no task or timer behind."""
        self.stopping = True
        for task in senders:
            task.cancel()
        if self.mark_timer is not None:
            self.mark_timer.cancel()
            self.mark_timer = None
        # Audio still buffered when the call ends is never played.
        self._drop_unplayed()
        if writer is not None:
            if self.ws.state is State.OPEN:
                self._queue(
                    {
                        "event": "stop",
                        "sequenceNumber": "",
                        "stop": {"accountSid": self.account_sid, "callSid": self.outcome.call_sid},
                        "streamSid": self.stream_sid,
                    }
                )
            self.outbox.put_nowait(None)
            await _settle(writer)
        await self.ws.close()
        if reader is not None:
            await _settle(reader)
        await asyncio.gather(*senders, return_exceptions=True)
        self._record_close()

    def _record_close(self) -> None:
        """Note the close code when the server, not this side, ended the socket."""
        protocol = self.ws.protocol
        if protocol.close_rcvd is None:
            if protocol.close_sent is None:
                self.outcome.close_code = _ABNORMAL_CLOSURE
                self.outcome.error("connection dropped without a close frame")
        elif protocol.close_rcvd_then_sent:
            self.outcome.close_code = protocol.close_rcvd.code

    def _queue(self, message: dict[str, Any]) -> None:
        """Hand a message to the writer, which numbers it in wire order."""
        self.outbox.put_nowait(message)

    async def _write(self) -> None:
        """Send queued messages in order, stamping sequence numbers."""
        while (message := await self.outbox.get()) is not None:
            if "sequenceNumber" in message:
                self.sequence += 1
                message["sequenceNumber"] = str(self.sequence)
            try:
                await self.ws.send(_json(message))
            except ConnectionClosed:
                self.ended.set()
                return
            if (
                message["event"] == "mark"
                and self.until_mark is not None
                and message["mark"]["name"] == self.until_mark
            ):
                self.ended.set()

    async def _send_media(self) -> None:
        """Send caller audio on an absolute 20 ms-style clock, like Twilio."""
        payload = base64.b64encode(INBOUND_CHUNK).decode("ascii")
        chunk = 0
        while True:
            due = self.started_at + chunk * self.media_interval
            delay = due - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk += 1
            self._queue(
                {
                    "event": "media",
                    "sequenceNumber": "",
                    "media": {
                        "track": "inbound",
                        "chunk": str(chunk),
                        "timestamp": str(round((chunk - 1) * self.media_interval * 1000)),
                        "payload": payload,
                    },
                    "streamSid": self.stream_sid,
                }
            )

    async def _send_dtmf(self) -> None:
        """Press the requested keys at their times."""
        for offset, digit in self.dtmf:
            delay = self.started_at + offset - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._queue(
                {
                    "event": "dtmf",
                    "streamSid": self.stream_sid,
                    "sequenceNumber": "",
                    "dtmf": {"track": "inbound_track", "digit": digit},
                }
            )

    async def _read(self) -> None:
        """Receive server messages until the socket closes."""
        try:
            async for frame in self.ws:
                # After `stop` the call is over: nothing more is played or answered.
                if not self.stopping:
                    self._handle(frame)
        except ConnectionClosed:
            pass
        except Exception as exc:
            # A bug here must show up in the report, not vanish with the task.
            self.outcome.error(f"reading server messages failed: {exc!r}")
        finally:
            self.ended.set()

    def _handle(self, frame: str | bytes) -> None:
        """Validate one server frame as Twilio does and act on it."""
        error = self.outcome.error
        if isinstance(frame, bytes):
            error("31950 binary frame from server")
            return
        try:
            message = json.loads(frame)
        except ValueError:
            error("31951 invalid JSON from server")
            return
        if not isinstance(message, dict):
            error("31951 server message is not a JSON object")
            return
        event = message.get("event")
        if self.on_event is not None:
            try:
                self.on_event(str(event), message)
            except Exception as exc:
                # A faulty hook is reported, not allowed to break the call.
                error(f"on_event hook raised {exc!r}")
        if not isinstance(event, str) or event not in _SERVER_SHAPES:
            error(f"31951 unknown event {event!r} from server")
            return
        if not self._valid_shape(event, message):
            return
        if message["streamSid"] != self.stream_sid:
            error(f"31951 wrong streamSid in {event}: {message['streamSid']!r}")
            return
        if event == "media":
            self._on_media(message["media"]["payload"])
        elif event == "mark":
            self._on_mark(message["mark"]["name"])
        else:
            self._on_clear()

    def _valid_shape(self, event: str, message: dict[str, Any]) -> bool:
        """Check the exact field set of an outbound Twilio message."""
        keys, nested_key, nested_keys = _SERVER_SHAPES[event]
        problem = _field_problem(set(message), keys)
        if problem is None and nested_key is not None:
            nested = message[nested_key]
            if not isinstance(nested, dict):
                problem = f"{nested_key} is not an object"
            else:
                problem = _field_problem(set(nested), nested_keys, f"{nested_key}.")
                if problem is None and not all(isinstance(nested[k], str) for k in nested_keys):
                    problem = f"{nested_key} fields must be strings"
        if problem is None and not isinstance(message["streamSid"], str):
            problem = "streamSid is not a string"
        if problem is not None:
            self.outcome.error(f"31951 invalid {event} message: {problem}")
            return False
        return True

    def _on_media(self, payload: str) -> None:
        """Buffer audio behind what is already queued for playback."""
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            self.outcome.error("31951 invalid media message: payload is not valid base64")
            return
        if audio.startswith(_FILE_HEADERS):
            self.outcome.error("31924 media payload starts with an audio file header")
        now = self.loop.time()
        if self.first_audio_after is None:
            self.first_audio_after = now - self.started_at
        self.media_messages += 1
        self.audio += audio
        self.heard += audio
        if self.realtime_playback:
            self.play_end = max(self.play_end, now) + len(audio) / SAMPLE_RATE

    def _on_mark(self, name: str) -> None:
        """Echo the mark once the audio queued before it has played."""
        self.marks.append(name)
        due = max(self.play_end, self.loop.time()) if self.realtime_playback else 0.0
        self.pending_marks.append((due, name))
        self._echo_due_marks()

    def _on_clear(self) -> None:
        """Drop unplayed audio and echo every pending mark, as Twilio does on `clear`."""
        self.clears += 1
        self._drop_unplayed()
        for _, name in self.pending_marks:
            self._echo(name)
        self.pending_marks.clear()
        if self.mark_timer is not None:
            self.mark_timer.cancel()
            self.mark_timer = None

    def _drop_unplayed(self) -> None:
        """Remove audio still buffered at this instant from what the caller heard."""
        now = self.loop.time()
        unplayed = min(len(self.heard), round(max(0.0, self.play_end - now) * SAMPLE_RATE))
        if unplayed:
            del self.heard[-unplayed:]
        self.play_end = now

    def _echo_due_marks(self) -> None:
        """Echo marks whose audio has played, in order, and wait for the next one."""
        if self.mark_timer is not None:
            self.mark_timer.cancel()
            self.mark_timer = None
        now = self.loop.time()
        # Marks stay in arrival order; a single timer for the head keeps echoes in that order.
        while self.pending_marks and self.pending_marks[0][0] <= now:
            self._echo(self.pending_marks.popleft()[1])
        if self.pending_marks:
            self.mark_timer = self.loop.call_at(self.pending_marks[0][0], self._echo_due_marks)

    def _echo(self, name: str) -> None:
        """Queue Twilio's mark echo."""
        self._queue(
            {
                "event": "mark",
                "sequenceNumber": "",
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )


async def _settle(task: asyncio.Task[None]) -> None:
    """Give a task a bounded time to finish on its own, then cancel it."""
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await asyncio.shield(task)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _field_problem(actual: set[str], expected: frozenset[str], prefix: str = "") -> str | None:
    """Describe missing or extra fields, or return None when the set is exact."""
    missing = sorted(expected - actual)
    extra = sorted(actual - expected)
    parts = []
    if missing:
        parts.append("missing " + ", ".join(prefix + name for name in missing))
    if extra:
        parts.append("extra " + ", ".join(prefix + name for name in extra))
    return "; ".join(parts) or None


async def simulate_call(
    base_url: str,
    *,
    to: str = "+15550100000",
    from_: str = "+15550199999",
    call_sid: str | None = None,
    auth_token: str = "",
    public_url: str = "",
    voice_path: str = "/voice",
    dtmf: Sequence[tuple[float, str]] = (),
    hang_up_after: float | None = None,
    until_mark: str | None = "greeting-end",
    timeout: float = 30.0,
    media_interval: float = 0.02,
    realtime_playback: bool = True,
    extra_params: Mapping[str, str] | None = None,
    on_event: EventHook | None = None,
) -> CallReport:
    """Play Twilio's part of one inbound call against a running voicebridge server."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    outcome = _Outcome(call_sid=call_sid or _sid("CA"))
    account_sid = _sid("AC")
    base_url = base_url.rstrip("/")
    public_url = (public_url or base_url).rstrip("/")

    params = {
        "CallSid": outcome.call_sid,
        "AccountSid": account_sid,
        "From": from_,
        "To": to,
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
        "Direction": "inbound",
        **(extra_params or {}),
    }
    headers = {"Accept": "*/*", "User-Agent": "TwilioProxy/1.1"}
    if auth_token:
        headers["X-Twilio-Signature"] = twilio_signature(
            auth_token, public_url + voice_path, params
        )
    try:
        async with httpx.AsyncClient(timeout=max(0.0, deadline - loop.time())) as client:
            response = await client.post(base_url + voice_path, data=params, headers=headers)
    except httpx.HTTPError as exc:
        outcome.error(f"webhook request failed: {exc!r}")
        return outcome.report()
    outcome.twiml_status = response.status_code
    outcome.twiml_body = response.text
    if response.status_code != 200:
        outcome.error(f"webhook answered HTTP {response.status_code}")
        return outcome.report()
    try:
        outcome.twiml = _parse_twiml(response.text)
    except ValueError as exc:
        outcome.error(str(exc))
        return outcome.report()

    stream_url = outcome.twiml.stream_url
    if urlsplit(stream_url).query:
        outcome.error("31920 Stream url has a query string")
    ws_headers = {}
    if auth_token:
        ws_headers["X-Twilio-Signature"] = twilio_signature(auth_token, stream_url)
    try:
        ws = await connect(
            _socket_url(base_url, stream_url),
            additional_headers=ws_headers,
            compression=None,
            open_timeout=max(0.0, deadline - loop.time()),
            ping_interval=None,
            close_timeout=_CLOSE_TIMEOUT,
            max_size=_MAX_MESSAGE_BYTES,
        )
    except InvalidStatus as exc:
        outcome.handshake_status = exc.response.status_code
        outcome.error(f"31920 handshake refused with HTTP {exc.response.status_code}")
        return outcome.report()
    except (OSError, TimeoutError, WebSocketException) as exc:
        outcome.error(f"WebSocket connection failed: {exc!r}")
        return outcome.report()
    outcome.handshake_status = 101
    outcome.stream_sid = _sid("MZ")
    session = _Session(
        ws,
        outcome,
        account_sid=account_sid,
        stream_sid=outcome.stream_sid,
        parameters=outcome.twiml.parameters,
        dtmf=dtmf,
        until_mark=until_mark,
        media_interval=media_interval,
        realtime_playback=realtime_playback,
        on_event=on_event,
    )
    await session.run(hang_up_after, deadline)
    return outcome.report(session)
