from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import json
import logging
import math
import re
import signal
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from calls.speech.voices import DEFAULT_VOICE

__all__ = [
    "FakeDeepgram",
    "SpeakRequest",
    "fake_audio",
    "main",
    "running_in_thread",
]

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000
MAX_BODY_BYTES = 2_000_000
BYTES_PER_SECOND = 8000
DEFAULT_MODEL = DEFAULT_VOICE
MODEL_PATTERN = re.compile(r"aura-(2-)?[a-z]+-[a-z]{2}")

_BYTES_PER_CHAR = 80
_MIN_AUDIO_BYTES = 160
_MAX_HEAD_BYTES = 64 * 1024
_CHUNK_TERMINATOR = b"0\r\n\r\n"
_ACCEPTED_CONTENT_TYPES = ("application/json", "text/plain")
_DEFAULT_ERR_CODES = {
    400: "Bad Request",
    401: "INVALID_AUTH",
    403: "INSUFFICIENT_PERMISSIONS",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE_ENTITY",
    429: "Too Many Requests",
    503: "Service Unavailable",
}
_DEFAULT_ERR_MSGS = {
    401: "Invalid credentials.",
    403: "Project does not have access to the requested model.",
    422: "Failed to handle request.",
    429: "Please try again later.",
    503: "Please try again later",
}
# Framing is ours to decide; a scripted failure must not be able to corrupt it.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


def fake_audio(model: str, text: str) -> bytes:
    """Return deterministic stand-in mu-law audio for `text` spoken by `model`."""
    return _fake_audio(model, text)


@functools.lru_cache(maxsize=32)
def _fake_audio(model: str, text: str) -> bytes:
    """Test tones, 10 ms of 8 kHz audio per character, a pitch per word, marked by the text."""
    length = max(_MIN_AUDIO_BYTES, _BYTES_PER_CHAR * len(text))
    # surrogatepass: JSON bodies may carry lone surrogates ("\ud800") and must not crash us.
    seed = hashlib.sha256(f"{model}\0{text}".encode("utf-8", "surrogatepass")).digest()
    blocks = -(-length // 32)
    # One bit of every sample (a quantisation step, not heard) tells (model, text) apart.
    marks = b"".join(hashlib.sha256(seed + i.to_bytes(8, "big")).digest() for i in range(blocks))
    word = 0
    audio = bytearray(length)
    for n in range(length):
        if n % _BYTES_PER_CHAR == 0 and n // _BYTES_PER_CHAR < len(text):
            word += text[n // _BYTES_PER_CHAR] == " "
        hertz = 330 + 55 * (seed[word % len(seed)] % 12)
        sample = int(6000 * math.sin(2 * math.pi * hertz * n / BYTES_PER_SECOND))
        audio[n] = _mulaw(sample) ^ (marks[n] & 1)
    # A UTF-8 continuation byte first: the audio can never decode as text, let alone JSON or RIFF.
    audio[0] = 0x80 | (audio[0] & 0x3F)
    return bytes(audio)


def _mulaw(sample: int) -> int:
    """Encode one 16-bit linear sample as G.711 mu-law."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = min(7, max(0, magnitude.bit_length() - 8))
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


@dataclass(frozen=True)
class SpeakRequest:
    """One `POST /v1/speak` as the fake received it."""

    model: str
    query: dict[str, str]
    headers: dict[str, str]
    text: str
    connection: int
    request_id: str = ""


@dataclass(frozen=True)
class _Fail:
    """Scripted: answer with this error."""

    status: int
    err_code: str
    err_msg: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Stall:
    """Scripted: wait this long before the first byte."""

    seconds: float


@dataclass(frozen=True)
class _Cut:
    """Scripted: drop the connection after this many audio bytes."""

    after_bytes: int


_Scripted = _Fail | _Stall | _Cut


@dataclass(frozen=True)
class _HttpRequest:
    """One parsed HTTP/1.x request."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        """Whether the client lets the connection carry another request afterwards."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        # HTTP/1.0 bodies here are delimited by closing, so 1.0 connections never persist.
        return self.version == "HTTP/1.1" and "close" not in tokens


@dataclass(frozen=True)
class _ApiError:
    """A Deepgram-style JSON error to send."""

    status: int
    err_code: str
    err_msg: str
    headers: tuple[tuple[str, str], ...] = ()


class _BadHttp(Exception):
    """The bytes on the wire are not an HTTP request we can answer and keep the connection."""

    def __init__(self, status: int, err_code: str, err_msg: str) -> None:
        super().__init__(err_msg)
        self.error = _ApiError(status, err_code, err_msg)


def _reason(status: int) -> str:
    """Return the reason phrase for `status`."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _response_head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
    """Serialize a status line and headers."""
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _json_response(
    status: int,
    payload: object,
    *,
    keep_alive: bool,
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Serialize a complete JSON response."""
    body = json.dumps(payload).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("date", formatdate(usegmt=True)),
    ]
    headers.extend(extra)
    if not keep_alive:
        headers.append(("connection", "close"))
    return _response_head(status, headers) + body


def _error_response(error: _ApiError, request_id: str, *, keep_alive: bool) -> bytes:
    """Serialize a Deepgram-style error with its request id in body and header."""
    payload = {"err_code": error.err_code, "err_msg": error.err_msg, "request_id": request_id}
    extra = [("dg-request-id", request_id)]
    extra.extend((k, v) for k, v in error.headers if k not in _FRAMING_HEADERS)
    return _json_response(error.status, payload, keep_alive=keep_alive, extra=extra)


def _check_times(times: int) -> None:
    """Reject a repeat count that is not a positive int."""
    if not isinstance(times, int) or isinstance(times, bool) or times < 1:
        raise ValueError(f"times must be a positive int, got {times!r}")


class FakeDeepgram:
    """An HTTP/1.1 server on 127.0.0.1 that answers `POST /v1/speak` like Deepgram Aura."""

    def __init__(
        self,
        *,
        ttfb: float = 0.0,
        speed: float = 0.0,
        chunk_size: int = 800,
        api_key: str | None = None,
    ) -> None:
        if ttfb < 0 or speed < 0:
            raise ValueError("ttfb and speed must not be negative")
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.ttfb = ttfb
        self.speed = speed
        self.chunk_size = chunk_size
        self.api_key = api_key
        self.requests: list[SpeakRequest] = []
        # Per dg-request-id: seconds from the request arriving to its first audio byte leaving.
        self.first_byte_seconds: dict[str, float] = {}
        self.connections_opened = 0
        self._script: deque[_Scripted] = deque()
        self._released = asyncio.Event()
        self._released.set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._conversations: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start listening on `host`:`port` (0 picks a free port)."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # asyncio.Event binds to the first loop that waits on it; a restart may use a new loop.
        held = not self._released.is_set()
        self._released = asyncio.Event()
        if not held:
            self._released.set()
        self._closing = False
        # A deep backlog so a burst of hundreds of connects is queued, not refused.
        self._server = await asyncio.start_server(
            self._serve_connection, host, port, backlog=1024, limit=_MAX_HEAD_BYTES
        )

    async def stop(self) -> None:
        """Stop listening and drop every open connection."""
        server = self._server
        if server is None:
            return
        self._closing = True
        server.close()
        # Connections accepted just before close() get their handler a few loop passes later;
        # wait those out too, so every socket is closed before the loop might be.
        quiet_passes = 0
        while quiet_passes < 5:
            if self._handlers:
                quiet_passes = 0
                for work in self._conversations:
                    work.cancel()
                await asyncio.gather(*self._handlers, return_exceptions=True)
            else:
                quiet_passes += 1
                await asyncio.sleep(0)
        await server.wait_closed()
        self._server = None

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. http://127.0.0.1:PORT."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("FakeDeepgram is not running")
        host, port = self._server.sockets[0].getsockname()[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        err_msg: str | None = None,
        headers: dict[str, str] | None = None,
        err_code: str | None = None,
    ) -> None:
        """Answer the next `times` speak requests with a Deepgram-style `status` error."""
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            raise ValueError(f"status must be an int from 400 to 599, got {status!r}")
        _check_times(times)
        pairs = tuple((str(k).lower(), str(v)) for k, v in (headers or {}).items())
        item = _Fail(
            status=status,
            err_code=err_code or _DEFAULT_ERR_CODES.get(status, _reason(status)),
            err_msg=err_msg or _DEFAULT_ERR_MSGS.get(status, f"{_reason(status)}."),
            headers=pairs,
        )
        self._on_loop(lambda: self._script.extend([item] * times))

    def stall(self, seconds: float, *, times: int = 1) -> None:
        """Delay the first byte of the next `times` speak requests by `seconds` more."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"seconds must be a non-negative number, got {seconds!r}")
        _check_times(times)
        item = _Stall(float(seconds))
        self._on_loop(lambda: self._script.extend([item] * times))

    def cut(self, after_bytes: int, *, times: int = 1) -> None:
        """Drop the connection of the next `times` speak requests after `after_bytes` of audio."""
        if not isinstance(after_bytes, int) or isinstance(after_bytes, bool) or after_bytes < 0:
            raise ValueError(f"after_bytes must be a non-negative int, got {after_bytes!r}")
        _check_times(times)
        item = _Cut(after_bytes)
        self._on_loop(lambda: self._script.extend([item] * times))

    def hold(self) -> None:
        """Pause every response after its first audio chunk until `release()`."""
        self._on_loop(lambda: self._released.clear())

    def release(self) -> None:
        """Let held responses finish."""
        self._on_loop(lambda: self._released.set())

    def reset(self) -> None:
        """Forget the script, the recorded requests and the counters, and release any hold."""

        def clear() -> None:
            self._script.clear()
            self.requests.clear()
            self.first_byte_seconds.clear()
            self.connections_opened = 0
            self._released.set()

        self._on_loop(clear)

    def _on_loop(self, change: Callable[[], None]) -> None:
        """Apply `change` on the server's loop, waiting for it when called from another thread."""
        loop = self._loop
        if (
            loop is None
            or threading.get_ident() == self._loop_thread
            or loop.is_closed()
            or not loop.is_running()
        ):
            change()
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                change()
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:
            # The loop closed between the check and the call; nothing can race us any more.
            change()
            return
        # Waiting makes "script, then send" ordered even across threads.
        done.result(timeout=10)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Own one accepted connection: converse on it, then close it."""
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            if self._closing:
                return
            self.connections_opened += 1
            work = asyncio.ensure_future(self._converse(reader, writer, self.connections_opened))
            self._conversations.add(work)
            try:
                await work
            except asyncio.CancelledError:
                # stop() cancels the conversation, never this task: Python 3.11's start_server
                # logs a spurious "Exception in callback" when a handler task ends cancelled.
                pass
            finally:
                self._conversations.discard(work)
        finally:
            self._handlers.discard(handler)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, serial: int
    ) -> None:
        """Answer requests on one connection, one after another, until either side closes."""
        try:
            while True:
                try:
                    request = await self._read_request(reader, writer)
                except _BadHttp as exc:
                    await _send(writer, _error_response(exc.error, _new_id(), keep_alive=False))
                    return
                if request is None:
                    return
                if not await self._respond(request, writer, serial):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception:
            logger.exception("fake Deepgram failed while answering a request")

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _HttpRequest | None:
        """Read one request, or return None when the client closed between requests."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as exc:
            raise _BadHttp(431, "Bad Request", "Request header fields too large.") from exc
        # RFC 9112 2.2: ignore empty lines before a request line.
        lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadHttp(400, "Bad Request", "Malformed request line.")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadHttp(400, "Bad Request", "Malformed header line.")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body = await self._read_body(reader, writer, headers, version)
        split = urlsplit(target)
        return _HttpRequest(method, split.path, split.query, version, headers, body)

    async def _read_body(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: dict[str, str],
        version: str,
    ) -> bytes:
        """Read the request body framed by content-length or chunked transfer-encoding."""
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length_header = headers.get("content-length")
        if not chunked and length_header is None:
            return b""
        if headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1":
            await _send(writer, b"HTTP/1.1 100 Continue\r\n\r\n")
        if chunked:
            return await _read_chunked(reader)
        if length_header is None or not length_header.isdigit():
            raise _BadHttp(400, "Bad Request", "Invalid content-length.")
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            raise _BadHttp(413, "PAYLOAD_TOO_LARGE", "Request body exceeds 2 MB.")
        return await reader.readexactly(length)

    async def _respond(
        self, request: _HttpRequest, writer: asyncio.StreamWriter, serial: int
    ) -> bool:
        """Answer one request; return whether the connection may carry another."""
        keep_alive = request.keep_alive
        routes: dict[str, tuple[str, Callable[[_HttpRequest], bytes]]] = {
            "/_fake/script": ("POST", self._control_script),
            "/_fake/stats": ("GET", self._control_stats),
        }
        if request.path == "/v1/speak":
            if request.method == "POST":
                return await self._speak(request, writer, serial)
            allowed = "POST"
        elif request.path in routes:
            allowed, handler = routes[request.path]
            if request.method == allowed:
                await _send(writer, handler(request))
                return keep_alive
        else:
            error = _ApiError(404, "NOT_FOUND", f"No route for {request.path}.")
            await _send(writer, _error_response(error, _new_id(), keep_alive=keep_alive))
            return keep_alive
        error = _ApiError(
            405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed.", (("allow", allowed),)
        )
        await _send(writer, _error_response(error, _new_id(), keep_alive=keep_alive))
        return keep_alive

    def _control_script(self, request: _HttpRequest) -> bytes:
        """Apply one scripting action sent as JSON by another process."""
        actions: dict[str, Callable[..., None]] = {
            "fail": self.fail,
            "stall": self.stall,
            "cut": self.cut,
            "hold": self.hold,
            "release": self.release,
            "reset": self.reset,
        }
        keep_alive = request.keep_alive
        try:
            payload = json.loads(request.body)
            if not isinstance(payload, dict):
                raise ValueError("body must be a JSON object")
            action = actions.get(payload.pop("action", None))
            if action is None:
                raise ValueError(f"action must be one of {sorted(actions)}")
            action(**payload)
        except (ValueError, TypeError) as exc:
            error = _ApiError(400, "INVALID_SCRIPT", str(exc))
            return _error_response(error, _new_id(), keep_alive=keep_alive)
        headers = [("date", formatdate(usegmt=True))]
        if not keep_alive:
            headers.append(("connection", "close"))
        return _response_head(204, headers)

    def _control_stats(self, request: _HttpRequest) -> bytes:
        """Report what the fake has seen, for a client in another process."""
        payload = {
            "requests": len(self.requests),
            "connections": self.connections_opened,
            # Control requests open connections too; these are the ones that carried speech.
            "speak_connections": len({r.connection for r in self.requests}),
            "texts": [[r.model, r.text] for r in self.requests],
            "first_byte_seconds": [
                self.first_byte_seconds.get(r.request_id) for r in self.requests
            ],
            "pending_script": len(self._script),
            "held": not self._released.is_set(),
        }
        return _json_response(200, payload, keep_alive=request.keep_alive)

    async def _speak(
        self, request: _HttpRequest, writer: asyncio.StreamWriter, serial: int
    ) -> bool:
        """Answer one `POST /v1/speak`; return whether the connection may carry another."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        keep_alive = request.keep_alive
        query = dict(parse_qsl(request.query, keep_blank_values=True))
        model = query.get("model", DEFAULT_MODEL)
        text, body_error = _parse_text(request)
        request_id = _new_id()
        self.requests.append(
            SpeakRequest(
                model=model,
                query=query,
                headers=dict(request.headers),
                text=text,
                connection=serial,
                request_id=request_id,
            )
        )
        scripted = self._script.popleft() if self._script else None
        stall = scripted.seconds if isinstance(scripted, _Stall) else 0.0
        if isinstance(scripted, _Fail):
            error: _ApiError | None = _ApiError(
                scripted.status, scripted.err_code, scripted.err_msg, scripted.headers
            )
        else:
            error = self._validate(request, query, model, text, body_error)
        if error is not None:
            await _sleep_until(started + stall)
            await _send(writer, _error_response(error, request_id, keep_alive=keep_alive))
            return keep_alive
        cut_after = scripted.after_bytes if isinstance(scripted, _Cut) else None
        await self._stream_audio(
            writer,
            request,
            model=model,
            text=text,
            request_id=request_id,
            first_byte_at=started + stall + self.ttfb,
            cut_after=cut_after,
            received=started,
        )
        return keep_alive and cut_after is None

    def _validate(
        self,
        request: _HttpRequest,
        query: dict[str, str],
        model: str,
        text: str,
        body_error: _ApiError | None,
    ) -> _ApiError | None:
        """Return the error Deepgram would give this request, or None if it would speak it."""
        auth = request.headers.get("authorization", "").strip()
        if not auth or (self.api_key is not None and auth != f"Token {self.api_key}"):
            return _ApiError(401, "INVALID_AUTH", "Invalid credentials.")
        query_error = _check_audio_format(query)
        if query_error is not None:
            return _ApiError(400, "INVALID_QUERY_PARAMETER", query_error)
        if not MODEL_PATTERN.fullmatch(model):
            return _ApiError(400, "Bad Request", "No such model/language/tier combination found.")
        if body_error is not None:
            return body_error
        if not text.strip():
            return _ApiError(400, "Bad Request", "Input text contains no characters.")
        if len(text) > MAX_TEXT_CHARS:
            return _ApiError(
                413,
                "Payload Too Large",
                f"Input text exceeds maximum character limit of {MAX_TEXT_CHARS}.",
            )
        return None

    async def _stream_audio(
        self,
        writer: asyncio.StreamWriter,
        request: _HttpRequest,
        *,
        model: str,
        text: str,
        request_id: str,
        first_byte_at: float,
        cut_after: int | None,
        received: float,
    ) -> None:
        """Send a 200 and the audio in paced chunks, or drop the connection when told to cut."""
        audio = fake_audio(model, text)
        chunked = request.version == "HTTP/1.1"
        headers = [
            ("content-type", "audio/basic"),
            ("dg-request-id", request_id),
            ("dg-model-name", model),
            ("dg-model-uuid", str(uuid.uuid5(uuid.NAMESPACE_URL, model))),
            ("dg-char-count", str(len(text))),
            ("date", formatdate(usegmt=True)),
        ]
        headers.append(("transfer-encoding", "chunked") if chunked else ("connection", "close"))
        if chunked and not request.keep_alive:
            headers.append(("connection", "close"))
        pending = _response_head(200, headers)
        end = len(audio) if cut_after is None else min(cut_after, len(audio))
        rate = BYTES_PER_SECOND * self.speed
        sent_first = False
        for offset in range(0, end, self.chunk_size):
            deadline = first_byte_at + (offset / rate if rate else 0.0)
            await _sleep_until(deadline)
            if sent_first:
                await self._released.wait()
            piece = audio[offset : min(offset + self.chunk_size, end)]
            framed = b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece
            await _send(writer, pending + framed)
            pending = b""
            if not sent_first:
                # Measured, not configured: what a client can fairly subtract as Deepgram's part.
                self.first_byte_seconds[request_id] = asyncio.get_running_loop().time() - received
            sent_first = True
        await _sleep_until(first_byte_at)
        if sent_first:
            await self._released.wait()
        if cut_after is not None:
            if pending:
                await _send(writer, pending)
            # A plain close after the data: the client sees an incomplete chunked body.
            writer.close()
            return
        await _send(writer, pending + (_CHUNK_TERMINATOR if chunked else b""))
        if not chunked:
            writer.close()


def _new_id() -> str:
    """Return a fresh request id."""
    return str(uuid.uuid4())


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write and drain, raising ConnectionResetError once the client has gone."""
    if writer.transport.is_closing():
        # Writing to a lost transport makes asyncio log "socket.send() raised exception.".
        raise ConnectionResetError("client went away")
    if data:
        writer.write(data)
    await writer.drain()


async def _sleep_until(deadline: float) -> None:
    """Sleep until the loop's monotonic clock reaches `deadline`."""
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Read a chunked request body, trailers included."""
    body = bytearray()
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";")[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as exc:
            raise _BadHttp(400, "Bad Request", "Malformed chunk size.") from exc
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        if len(body) + size > MAX_BODY_BYTES:
            raise _BadHttp(413, "PAYLOAD_TOO_LARGE", "Request body exceeds 2 MB.")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise _BadHttp(400, "Bad Request", "Malformed chunk.")


def _check_audio_format(query: dict[str, str]) -> str | None:
    """Return why the query is not raw 8 kHz mu-law, or None if it is."""
    expected = {"encoding": "mulaw", "sample_rate": "8000", "container": "none"}
    for name, want in expected.items():
        got = query.get(name)
        if got != want:
            shown = "unset" if got is None else f"{name}={got}"
            return f"Unsupported audio format: this server speaks only {name}={want} ({shown})."
    if "bit_rate" in query:
        return "`bit_rate` is not applicable when `encoding=mulaw`."
    return None


def _parse_text(request: _HttpRequest) -> tuple[str, _ApiError | None]:
    """Extract the text to speak from the body, or the error Deepgram would give."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type not in _ACCEPTED_CONTENT_TYPES:
        return "", _ApiError(
            415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json or text/plain."
        )
    try:
        decoded = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return "", _ApiError(400, "PAYLOAD_ERROR", "Request body is not valid UTF-8.")
    if media_type == "text/plain":
        return decoded, None
    try:
        payload: Any = json.loads(decoded)
    except ValueError as exc:
        return "", _ApiError(400, "PAYLOAD_ERROR", f"Invalid JSON payload: {exc}.")
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("text"), str)
        or "url" in payload
    ):
        return "", _ApiError(
            400, "PAYLOAD_ERROR", "Body must be a JSON object with a string `text` (and no `url`)."
        )
    return payload["text"], None


@contextlib.contextmanager
def running_in_thread(
    *, host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> Iterator[FakeDeepgram]:
    """Run a FakeDeepgram on its own loop in a daemon thread for the length of the block."""
    fake = FakeDeepgram(**kwargs)
    ready = threading.Event()
    failure: list[BaseException] = []
    loop_box: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        stop = asyncio.Event()
        try:
            await fake.start(host, port)
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        loop_box.append((asyncio.get_running_loop(), stop))
        ready.set()
        try:
            await stop.wait()
        finally:
            await fake.stop()

    thread = threading.Thread(
        target=asyncio.run, args=(serve(),), name="fake-deepgram", daemon=True
    )
    thread.start()
    ready.wait()
    if failure:
        thread.join()
        raise failure[0]
    loop, stop = loop_box[0]
    try:
        yield fake
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)


async def _serve_until_signalled(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT."""
    fake = FakeDeepgram(
        ttfb=args.ttfb, speed=args.speed, chunk_size=args.chunk_size, api_key=args.api_key
    )
    await fake.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening on {fake.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake Deepgram from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.fake_deepgram",
        description="Serve a local stand-in for Deepgram's POST /v1/speak until SIGTERM/SIGINT.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="port to bind; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--ttfb",
        type=float,
        default=0.0,
        help="seconds before the first audio byte of each response (default: %(default)s)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="stream at this multiple of real time; 0 sends as fast as possible "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=800,
        help="audio bytes per chunked-encoding chunk (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="accept only 'Authorization: Token KEY'; without it any Authorization is accepted",
    )
    args = parser.parse_args(argv)
    if args.ttfb < 0 or args.speed < 0 or args.chunk_size < 1:
        parser.error("--ttfb and --speed must not be negative and --chunk-size must be positive")
    asyncio.run(_serve_until_signalled(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
