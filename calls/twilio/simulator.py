"""Twilio's part of one inbound call, over real HTTP and WebSocket: the webhook, each Media
Stream with a playback clock, and the TwiML that follows a stream until the call ends."""

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
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.protocol import State

from calls.speech.audio import MULAW_SILENCE, SAMPLE_RATE
from calls.twilio.protocol import GREETING_MARK

__all__ = ["CallReport", "StreamReport", "simulate_call", "twilio_signature"]

INBOUND_CHUNK = bytes([MULAW_SILENCE]) * 160
MAX_TWIML_REQUESTS = 10
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_CLOSE_TIMEOUT = 5.0
_ABNORMAL_CLOSURE = 1006
_HEADERS = {"Accept": "*/*", "User-Agent": "TwilioProxy/1.1"}
# Container headers that mean the server forgot Deepgram's container=none (Twilio plays noise).
_FILE_HEADERS = (b"RIFF", b"OggS", b"fLaC", b"ID3")

# Called with each server message by its event, and with "stream-started" / "stream-stopped"
# (streamSid, callSid, index; closeCode, endedBy) so a hook knows which stream it is on.
EventHook = Callable[[str, dict[str, Any]], None]
EndedBy = Literal["caller", "server", "dropped"]

_SERVER_SHAPES: dict[str, tuple[frozenset[str], str | None, frozenset[str]]] = {
    # event: (top-level keys, nested object key, nested keys)
    "media": (frozenset({"event", "streamSid", "media"}), "media", frozenset({"payload"})),
    "mark": (frozenset({"event", "streamSid", "mark"}), "mark", frozenset({"name"})),
    "clear": (frozenset({"event", "streamSid"}), None, frozenset()),
}


@dataclass(frozen=True)
class StreamReport:
    """What one Media Stream of the call saw, from `start` to its close."""

    stream_sid: str
    url: str
    parameters: dict[str, str]
    audio_bytes: int
    heard_bytes: int
    media_messages: int
    first_audio_after: float | None
    marks: tuple[str, ...]
    clears: int
    close_code: int | None
    ended_by: EndedBy
    seconds: float

    @property
    def heard_seconds(self) -> float:
        """How long the audio the caller heard on this stream lasts."""
        return self.heard_bytes / SAMPLE_RATE

    def describe(self) -> str:
        """The stream in plain words, for a call's path."""
        marks = ", ".join(self.marks) or "none"
        ending = {
            "caller": "the caller hung up",
            "server": f"closed by the server ({self.close_code})",
            "dropped": f"the connection dropped ({self.close_code})",
        }[self.ended_by]
        return (
            f"stream {self.stream_sid} {self.heard_seconds:.1f} s of audio, marks {marks}; "
            f"{ending} after {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class CallReport:
    """What one simulated Twilio call saw, across all its streams and TwiML steps."""

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
    streams: tuple[StreamReport, ...] = ()
    path: tuple[str, ...] = ()

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
class _Step:
    """One TwiML verb, as far as the simulator follows it."""

    verb: Literal["say", "pause", "hangup", "stream", "redirect", "other"]
    tag: str
    text: str = ""
    seconds: float = 0.0
    url: str = ""
    method: str = "POST"
    parameters: Mapping[str, str] = field(default_factory=dict)
    action: str = ""


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """Return the X-Twilio-Signature Twilio would send for this URL and form."""
    return RequestValidator(auth_token).compute_signature(url, dict(params or {}))


def _sid(prefix: str) -> str:
    """Return a random Twilio-style SID."""
    return prefix + secrets.token_hex(16)


def _parse_twiml(body: str) -> tuple[_Step, ...]:
    """Read a TwiML document into the steps Twilio would run; raise ValueError if malformed."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"TwiML is not valid XML: {exc}") from exc
    if root.tag != "Response":
        raise ValueError(f"TwiML root is <{root.tag}>, not <Response>")
    return tuple(_step(verb) for verb in root)


def _step(verb: ET.Element) -> _Step:
    """Read one TwiML verb."""
    method = verb.get("method", "POST").upper()
    if verb.tag == "Say":
        return _Step("say", verb.tag, text=verb.text or "")
    if verb.tag == "Hangup":
        return _Step("hangup", verb.tag)
    if verb.tag == "Pause":
        try:
            seconds = float(verb.get("length", "1"))
        except ValueError as exc:
            raise ValueError(
                f"TwiML <Pause> length {verb.get('length')!r} is not a number"
            ) from exc
        return _Step("pause", verb.tag, seconds=seconds)
    if verb.tag == "Redirect":
        url = (verb.text or "").strip()
        if not url:
            raise ValueError("TwiML <Redirect> has no URL")
        return _Step("redirect", verb.tag, url=url, method=method)
    if verb.tag == "Connect":
        stream = verb.find("Stream")
        if stream is None:
            raise ValueError("TwiML <Connect> has no <Stream>")
        url = stream.get("url", "")
        if not url:
            raise ValueError("TwiML <Stream> has no url")
        parameters = {
            parameter.get("name", ""): parameter.get("value", "")
            for parameter in stream.findall("Parameter")
        }
        return _Step(
            "stream",
            verb.tag,
            url=url,
            method=method,
            parameters=parameters,
            action=verb.get("action", ""),
        )
    return _Step("other", verb.tag)


def _on_server(server: str, public: str) -> str:
    """Map a public URL onto a server that really listens, as a TLS proxy would."""
    base = urlsplit(server)
    target = urlsplit(public)
    if target.scheme in ("ws", "wss"):
        scheme = "wss" if base.scheme in ("https", "wss") else "ws"
    else:
        scheme = base.scheme
    return urlunsplit((scheme, base.netloc, target.path or "/", target.query, ""))


def _json(message: dict[str, Any]) -> str:
    """Serialise an outbound message compactly, as Twilio does."""
    return json.dumps(message, separators=(",", ":"))


class _Session:
    """One Media Stream of the call: Twilio's sender, receiver and playback buffer."""

    def __init__(
        self, ws: ClientConnection, call: _Call, *, url: str, parameters: Mapping[str, str]
    ) -> None:
        self.ws = ws
        self.call = call
        self.url = url
        self.stream_sid = _sid("MZ")
        self.parameters = dict(parameters)
        self.loop = asyncio.get_running_loop()

        self.audio_bytes = 0
        self.heard_from = len(call.heard)
        self.media_messages = 0
        self.first_audio_after: float | None = None
        self.marks: list[str] = []
        self.clears = 0
        self.close_code: int | None = None
        self.caller_done = False

        self.started_at = 0.0
        self.ended = asyncio.Event()
        self.sequence = 1
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.play_end = 0.0
        self.pending_marks: deque[tuple[float, str]] = deque()
        self.mark_timer: asyncio.TimerHandle | None = None
        self.stopping = False

    async def run(self) -> StreamReport:
        """Play the stream from `connected` until the caller or the server ends it."""
        reader: asyncio.Task[None] | None = None
        writer: asyncio.Task[None] | None = None
        senders: list[asyncio.Task[None]] = []
        try:
            await self.ws.send(
                _json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            )
            await self.ws.send(_json(self._start_message()))
            self.started_at = self.loop.time()
            self.call.stream_started(self)
            self.play_end = self.started_at
            reader = asyncio.create_task(self._read())
            writer = asyncio.create_task(self._write())
            if self.call.media_interval > 0:
                senders.append(asyncio.create_task(self._send_media()))
            if self.call.dtmf:
                senders.append(asyncio.create_task(self._send_dtmf()))
            if await self._wait_for_end():
                self.caller_done = True
        except ConnectionClosed:
            pass
        finally:
            await self._finish(reader, writer, senders)
        return self._report()

    def _report(self) -> StreamReport:
        """Freeze what this stream saw."""
        if self.caller_done:
            ended_by: EndedBy = "caller"
        elif self.close_code == _ABNORMAL_CLOSURE:
            ended_by = "dropped"
        else:
            ended_by = "server"
        return StreamReport(
            stream_sid=self.stream_sid,
            url=self.url,
            parameters=dict(self.parameters),
            audio_bytes=self.audio_bytes,
            heard_bytes=len(self.call.heard) - self.heard_from,
            media_messages=self.media_messages,
            first_audio_after=self.first_audio_after,
            marks=tuple(self.marks),
            clears=self.clears,
            close_code=self.close_code,
            ended_by=ended_by,
            seconds=(self.loop.time() - self.started_at) if self.started_at else 0.0,
        )

    def _start_message(self) -> dict[str, Any]:
        """Build the `start` message exactly in Twilio's shape."""
        return {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": self.call.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": self.parameters,
            },
            "streamSid": self.stream_sid,
        }

    async def _wait_for_end(self) -> bool:
        """Wait for the stream to end; return whether the caller ended it (hang-up, timeout)."""
        hang_up_at, deadline = self.call.hang_up_at(), self.call.deadline
        wait_until = min(hang_up_at, deadline)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(None if math.isinf(wait_until) else wait_until):
                await self.ended.wait()
                return self.caller_done
        if hang_up_at > deadline:
            self.call.error("timeout: the call did not end in time")
        return True

    async def _finish(
        self,
        reader: asyncio.Task[None] | None,
        writer: asyncio.Task[None] | None,
        senders: list[asyncio.Task[None]],
    ) -> None:
        """Send `stop` if the caller hung up, close the socket, leave no task or timer behind."""
        self.stopping = True
        for task in senders:
            task.cancel()
        if self.mark_timer is not None:
            self.mark_timer.cancel()
            self.mark_timer = None
        # Audio still buffered when the stream ends is never played.
        self._drop_unplayed()
        if writer is not None:
            if self.ws.state is State.OPEN:
                self._queue(
                    {
                        "event": "stop",
                        "sequenceNumber": "",
                        "stop": {
                            "accountSid": self.call.account_sid,
                            "callSid": self.call.call_sid,
                        },
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
                self.close_code = _ABNORMAL_CLOSURE
        elif protocol.close_rcvd_then_sent:
            self.close_code = protocol.close_rcvd.code

    def _queue(self, message: dict[str, Any]) -> None:
        """Hand a message to the writer, which numbers it in wire order."""
        self.outbox.put_nowait(message)

    async def _write(self) -> None:
        """Send queued messages in order, stamping sequence numbers."""
        until_mark = self.call.until_mark
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
                and until_mark is not None
                and message["mark"]["name"] == until_mark
            ):
                self.caller_done = True
                self.ended.set()

    async def _send_media(self) -> None:
        """Send caller audio on an absolute 20 ms-style clock, like Twilio."""
        payload = base64.b64encode(INBOUND_CHUNK).decode("ascii")
        interval = self.call.media_interval
        chunk = 0
        while True:
            due = self.started_at + chunk * interval
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
                        "timestamp": str(round((chunk - 1) * interval * 1000)),
                        "payload": payload,
                    },
                    "streamSid": self.stream_sid,
                }
            )

    async def _send_dtmf(self) -> None:
        """Press the keys due on this stream at their times in the call."""
        origin = self.call.started_at
        assert origin is not None
        for offset, digit in self.call.dtmf:
            due = origin + offset
            # A key pressed while no stream was open never reaches one.
            if due < self.started_at:
                continue
            delay = due - self.loop.time()
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
            self.call.error(f"reading server messages failed: {exc!r}")
        finally:
            self.ended.set()

    def _handle(self, frame: str | bytes) -> None:
        """Validate one server frame as Twilio does and act on it."""
        error = self.call.error
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
        if self.call.on_event is not None:
            try:
                self.call.on_event(str(event), message)
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
            self.call.error(f"31951 invalid {event} message: {problem}")
            return False
        return True

    def _on_media(self, payload: str) -> None:
        """Buffer audio behind what is already queued for playback."""
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            self.call.error("31951 invalid media message: payload is not valid base64")
            return
        if audio.startswith(_FILE_HEADERS):
            self.call.error("31924 media payload starts with an audio file header")
        now = self.loop.time()
        if self.first_audio_after is None:
            self.first_audio_after = now - self.started_at
        self.media_messages += 1
        self.audio_bytes += len(audio)
        self.call.audio += audio
        self.call.heard += audio
        if self.call.realtime_playback:
            self.play_end = max(self.play_end, now) + len(audio) / SAMPLE_RATE

    def _on_mark(self, name: str) -> None:
        """Echo the mark once the audio queued before it has played."""
        self.marks.append(name)
        self.call.marks.append(name)
        due = max(self.play_end, self.loop.time()) if self.call.realtime_playback else 0.0
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
        heard = self.call.heard
        unplayed = min(
            len(heard) - self.heard_from, round(max(0.0, self.play_end - now) * SAMPLE_RATE)
        )
        if unplayed > 0:
            del heard[-unplayed:]
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


class _Call:
    """One call as Twilio runs it: the TwiML documents, their streams, and what was collected."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        servers: Sequence[str],
        public_url: str,
        auth_token: str,
        form: Mapping[str, str],
        dtmf: Sequence[tuple[float, str]],
        until_mark: str | None,
        hang_up_after: float | None,
        media_interval: float,
        realtime_playback: bool,
        on_event: EventHook | None,
        deadline: float,
    ) -> None:
        self.client = client
        self.servers = tuple(servers)
        self.public_url = public_url
        self.auth_token = auth_token
        self.form = dict(form)
        self.call_sid = self.form["CallSid"]
        self.account_sid = self.form["AccountSid"]
        self.dtmf = sorted(dtmf, key=lambda press: press[0])
        self.until_mark = until_mark
        self.hang_up_after = hang_up_after
        self.media_interval = media_interval
        self.realtime_playback = realtime_playback
        self.on_event = on_event
        self.deadline = deadline
        self.loop = asyncio.get_running_loop()

        self.twiml_status = 0
        self.twiml_body = ""
        self.first: _Step | None = None
        self.after_connect: tuple[str, ...] = ()
        self.handshake_status: int | None = None
        self.say: list[str] = []
        self.audio = bytearray()
        self.heard = bytearray()
        self.marks: list[str] = []
        self.streams: list[StreamReport] = []
        self.path: list[str] = []
        self.errors: dict[str, int] = {}
        # When the first stream started: the caller's clock for hang-up and key presses.
        self.started_at: float | None = None
        self.hung_up = False

    def error(self, message: str) -> None:
        """Record a problem, counting repeats instead of listing them again."""
        self.errors[message] = self.errors.get(message, 0) + 1

    def hang_up_at(self) -> float:
        """When the caller hangs up, on the loop's clock (infinity if never)."""
        if self.hang_up_after is None or self.started_at is None:
            return math.inf
        return self.started_at + self.hang_up_after

    def stream_started(self, session: _Session) -> None:
        """Start the caller's clock on the first stream and tell the hook."""
        if self.started_at is None:
            self.started_at = session.started_at
        self._notify(
            "stream-started",
            {"streamSid": session.stream_sid, "callSid": self.call_sid, "index": len(self.streams)},
        )

    def _notify(self, event: str, message: dict[str, Any]) -> None:
        """Pass a stream's own event to the hook; a faulty hook is reported, not fatal."""
        if self.on_event is None:
            return
        try:
            self.on_event(event, message)
        except Exception as exc:
            self.error(f"on_event hook raised {exc!r}")

    async def run(self, voice_path: str) -> None:
        """Ask the voice webhook, then follow TwiML until the call ends."""
        url = self.public_url + voice_path
        answer = await self._request("webhook", "POST", url)
        if answer is None:
            return
        self.twiml_status, self.twiml_body = answer
        if self.twiml_status != 200:
            self.error(f"webhook answered HTTP {self.twiml_status}")
            return
        try:
            steps = _parse_twiml(self.twiml_body)
        except ValueError as exc:
            self.error(str(exc))
            return
        streams = [n for n, step in enumerate(steps) if step.verb == "stream"]
        if not streams:
            self.error("TwiML has no <Connect><Stream>")
            return
        self.first = steps[streams[0]]
        self.after_connect = tuple(step.tag for step in steps[streams[0] + 1 :])
        requests = 0
        while (next_request := await self._run_document(steps, url)) is not None:
            requests += 1
            if requests > MAX_TWIML_REQUESTS:
                self.error(f"more than {MAX_TWIML_REQUESTS} TwiML requests after the webhook")
                return
            kind, method, url = next_request
            answer = await self._request(kind, method, url)
            if answer is None:
                return
            status, body = answer
            if status != 200:
                self.error(f"{kind} {urlsplit(url).path} answered HTTP {status}")
                return
            try:
                steps = _parse_twiml(body)
            except ValueError as exc:
                self.error(f"{kind} {urlsplit(url).path}: {exc}")
                return

    async def _run_document(self, steps: Sequence[_Step], url: str) -> tuple[str, str, str] | None:
        """Run one document's verbs; return the next request (kind, method, URL), if any."""
        for step in steps:
            if self._caller_gone():
                return None
            if step.verb == "say":
                self.say.append(step.text)
                self.path.append(f'say "{step.text}"')
            elif step.verb == "pause":
                self.path.append(f"pause {step.seconds:g} s")
                until = min(self.loop.time() + step.seconds, self.hang_up_at(), self.deadline)
                await asyncio.sleep(max(0.0, until - self.loop.time()))
            elif step.verb == "hangup":
                self.path.append("hangup")
                return None
            elif step.verb == "redirect":
                return "redirect", step.method, urljoin(url, step.url)
            elif step.verb == "stream":
                await self._stream(step)
                if self.hung_up:
                    return None
                # Without an action Twilio goes on to the document's next verb.
                if step.action:
                    return "action", step.method, urljoin(url, step.action)
            else:
                self.path.append(f"<{step.tag}> (not simulated: the call ends here)")
                return None
        if not self._caller_gone():
            self.path.append("end of TwiML: Twilio hangs up")
        return None

    def _caller_gone(self) -> bool:
        """Whether the caller has hung up or the call ran out of time."""
        if self.hung_up:
            return True
        now = self.loop.time()
        if now >= self.deadline:
            self.error("timeout: the call did not end in time")
            self.hung_up = True
        elif now >= self.hang_up_at():
            self.path.append("the caller hung up")
            self.hung_up = True
        return self.hung_up

    async def _request(self, kind: str, method: str, url: str) -> tuple[int, str] | None:
        """Request TwiML at a public URL, signed as Twilio does; None when nobody answered."""
        params = dict(self.form)
        if kind != "webhook":
            params["CallStatus"] = "in-progress"
        if method == "GET":
            split = urlsplit(url)
            query = urlencode([*parse_qsl(split.query, keep_blank_values=True), *params.items()])
            url, data = urlunsplit(split._replace(query=query)), None
            signed: Mapping[str, str] = {}
        else:
            data, signed = params, params
        headers = dict(_HEADERS)
        if self.auth_token:
            headers["X-Twilio-Signature"] = twilio_signature(self.auth_token, url, signed)
        split = urlsplit(url)
        shown = split.path + (f"?{split.query}" if split.query and method != "GET" else "")
        failure: Exception | None = None
        for server in self.servers:
            timeout = max(0.001, self.deadline - self.loop.time())
            try:
                response = await self.client.request(
                    method, _on_server(server, url), data=data, headers=headers, timeout=timeout
                )
            except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError) as exc:
                # Like a load balancer: a server that refuses or drops connections is skipped.
                failure = exc
                continue
            except httpx.HTTPError as exc:
                failure = exc
                break
            self.path.append(f"{kind} {method} {shown}: HTTP {response.status_code}")
            return response.status_code, response.text
        self.path.append(f"{kind} {method} {shown}: no answer")
        self.error(f"{kind} request failed: {failure!r}")
        return None

    async def _stream(self, step: _Step) -> None:
        """Open the step's Media Stream and play it until it ends."""
        if urlsplit(step.url).query:
            self.error("31920 Stream url has a query string")
        headers = {}
        if self.auth_token:
            headers["X-Twilio-Signature"] = twilio_signature(self.auth_token, step.url)
        ws: ClientConnection | None = None
        for server in self.servers:
            try:
                ws = await connect(
                    _on_server(server, step.url),
                    additional_headers=headers,
                    compression=None,
                    open_timeout=max(0.001, self.deadline - self.loop.time()),
                    ping_interval=None,
                    close_timeout=_CLOSE_TIMEOUT,
                    max_size=_MAX_MESSAGE_BYTES,
                )
                break
            except InvalidStatus as exc:
                status = exc.response.status_code
                self._handshake(status)
                self.error(f"31920 handshake refused with HTTP {status}")
                self.path.append(f"stream refused with HTTP {status}")
                return
            except ConnectionRefusedError:
                continue
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.error(f"WebSocket connection failed: {exc!r}")
                self.path.append("stream failed to connect")
                return
        if ws is None:
            self.error("WebSocket connection failed: every server refused the connection")
            self.path.append("stream failed to connect")
            return
        self._handshake(101)
        session = _Session(ws, self, url=step.url, parameters=step.parameters)
        stream = await session.run()
        self.streams.append(stream)
        self.path.append(stream.describe())
        if stream.ended_by == "caller":
            self.hung_up = True
        self._notify(
            "stream-stopped",
            {
                "streamSid": stream.stream_sid,
                "callSid": self.call_sid,
                "index": len(self.streams) - 1,
                "closeCode": stream.close_code,
                "endedBy": stream.ended_by,
            },
        )

    def _handshake(self, status: int) -> None:
        """Keep the first stream's handshake status as the call's."""
        if self.handshake_status is None:
            self.handshake_status = status

    def report(self) -> CallReport:
        """Freeze what was collected."""
        first = self.first
        streams = tuple(self.streams)
        return CallReport(
            twiml_status=self.twiml_status,
            twiml=self.twiml_body,
            say=tuple(self.say),
            stream_url=first.url if first else "",
            parameters=dict(first.parameters) if first else {},
            after_connect=self.after_connect,
            handshake_status=self.handshake_status,
            audio=bytes(self.audio),
            heard=bytes(self.heard),
            media_messages=sum(s.media_messages for s in streams),
            first_audio_after=next(
                (s.first_audio_after for s in streams if s.first_audio_after is not None), None
            ),
            marks=tuple(self.marks),
            clears=sum(s.clears for s in streams),
            close_code=streams[-1].close_code if streams else None,
            errors=tuple(
                message if count == 1 else f"{message} (x{count})"
                for message, count in self.errors.items()
            ),
            call_sid=self.call_sid,
            stream_sid=streams[0].stream_sid if streams else "",
            streams=streams,
            path=tuple(self.path),
        )


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
    until_mark: str | None = GREETING_MARK,
    timeout: float = 30.0,
    media_interval: float = 0.02,
    realtime_playback: bool = True,
    extra_params: Mapping[str, str] | None = None,
    on_event: EventHook | None = None,
    failover: Sequence[str] = (),
) -> CallReport:
    """Play Twilio's part of one inbound call against a running voicebridge server."""
    loop = asyncio.get_running_loop()
    form = {
        "CallSid": call_sid or _sid("CA"),
        "AccountSid": _sid("AC"),
        "From": from_,
        "To": to,
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
        "Direction": "inbound",
        **(extra_params or {}),
    }
    base_url = base_url.rstrip("/")
    # A connection per request, as Twilio makes them: a kept one would stay with one worker.
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        call = _Call(
            client,
            servers=[base_url, *(url.rstrip("/") for url in failover)],
            public_url=(public_url or base_url).rstrip("/"),
            auth_token=auth_token,
            form=form,
            dtmf=dtmf,
            until_mark=until_mark,
            hang_up_after=hang_up_after,
            media_interval=media_interval,
            realtime_playback=realtime_playback,
            on_event=on_event,
            deadline=loop.time() + timeout,
        )
        await call.run(voice_path)
    return call.report()
