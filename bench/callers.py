"""Lean simulated Twilio callers for load: many calls per process, one clock for all their frames.

`calls/simulator.py` checks every frame like Twilio would; here a caller only does what load needs:
when its call arrives, the webhook, the handshake, `connected` and `start`, then a 160-byte `media`
frame every 20 ms until it hangs up, an echo of each `mark`, and `stop`. Calls arrive while earlier
ones are talking, as on Twilio. Set-up and time to first audio are taken on this side.
"""

from __future__ import annotations

import asyncio
import base64
import html
import multiprocessing
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK, WebSocketException

from calls.twilio.simulator import twilio_signature

FRAME_SECONDS = 0.02
# Twilio sends caller audio in 20 ms frames of 160 mu-law bytes; silence is 0xFF.
INBOUND_PAYLOAD = base64.b64encode(b"\xff" * 160).decode("ascii")
# The server under test checks Twilio signatures as in production; callers sign as Twilio does.
TWILIO_AUTH_TOKEN = "benchmark-twilio-auth-token"
_TICK = 0.004
_CONNECTS_AT_ONCE = 25
_STREAM = re.compile(r'<Stream\b[^>]*\burl="([^"]+)"')
_PARAMETER = re.compile(r'<Parameter\b[^>]*\bname="([^"]*)"[^>]*\bvalue="([^"]*)"')


@dataclass(frozen=True)
class Plan:
    """One phase: who calls where, when each sends `start`, when all hang up (seconds after T0)."""

    base_url: str
    start_offsets: tuple[float, ...]
    hang_up_at: float
    webhook: bool = True
    window: tuple[float, float] = (0.0, 0.0)
    # The called number (`To`) of each caller, in the order of `start_offsets`; else one for all.
    numbers: tuple[str, ...] = ()
    # Dial every caller before T0, so the offsets are when each sends `start` alone.
    predial: bool = False
    # Each caller hangs up this long after its `start`, else all at `hang_up_at`.
    hold: float | None = None
    media: bool = True


@dataclass(frozen=True)
class CallResult:
    """What one caller measured: set-up is from the webhook to `start` sent."""

    ttfa: float | None
    frames_in_window: int
    error: str = ""
    number: str = ""
    setup: float | None = None


@dataclass(frozen=True)
class WorkerResult:
    """What one caller process measured, and how late its clock ran."""

    calls: tuple[CallResult, ...]
    max_tick_lag: float
    cpu_seconds: float


DEFAULT_NUMBER = "+15550002222"


@dataclass(eq=False)
class _Caller:
    start_at: float
    number: str = DEFAULT_NUMBER
    ends_at: float = 0.0
    dialled: float | None = None
    sid: str = field(default_factory=lambda: "CA" + secrets.token_hex(16))
    stream_sid: str = field(default_factory=lambda: "MZ" + secrets.token_hex(16))
    ws: ClientConnection | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    started: float | None = None
    first_audio: float | None = None
    next_frame: float = 0.0
    sequence: int = 1
    frames_in_window: int = 0
    error: str = ""
    reader: asyncio.Task[None] | None = None

    def start_message(self) -> str:
        params = ",".join(
            f'"{_escape(k)}":"{_escape(v)}"' for k, v in sorted(self.parameters.items())
        )
        return (
            f'{{"event":"start","sequenceNumber":"1","start":{{"accountSid":"AC{"0" * 32}",'
            f'"streamSid":"{self.stream_sid}","callSid":"{self.sid}","tracks":["inbound"],'
            f'"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}},'
            f'"customParameters":{{{params}}}}},"streamSid":"{self.stream_sid}"}}'
        )

    def media_message(self) -> str:
        self.sequence += 1
        chunk = self.sequence - 1
        return (
            f'{{"event":"media","sequenceNumber":"{self.sequence}","media":{{"track":"inbound",'
            f'"chunk":"{chunk}","timestamp":"{chunk * 20}","payload":"{INBOUND_PAYLOAD}"}},'
            f'"streamSid":"{self.stream_sid}"}}'
        )


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


async def _dial(caller: _Caller, plan: Plan, http: httpx.AsyncClient) -> None:
    """Ask the webhook for TwiML like Twilio does, then open the Stream and send `connected`."""
    url = plan.base_url.replace("http://", "ws://", 1) + "/twilio"
    if plan.webhook:
        form = {"CallSid": caller.sid, "From": "+15550001111", "To": caller.number}
        signature = twilio_signature(TWILIO_AUTH_TOKEN, plan.base_url + "/voice", form)
        answer = await http.post("/voice", data=form, headers={"X-Twilio-Signature": signature})
        answer.raise_for_status()
        stream = _STREAM.search(answer.text)
        if stream is None:
            raise RuntimeError(f"no <Stream> in TwiML: {answer.text[:200]}")
        url = html.unescape(stream[1])
        caller.parameters = {
            html.unescape(k): html.unescape(v) for k, v in _PARAMETER.findall(answer.text)
        }
    caller.ws = await connect(
        url,
        additional_headers={"X-Twilio-Signature": twilio_signature(TWILIO_AUTH_TOKEN, url)},
        compression=None,
        max_size=None,
        open_timeout=30,
    )
    await caller.ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')


async def _read(caller: _Caller) -> None:
    """Note when the first audio arrives and echo every mark at once."""
    assert caller.ws is not None
    try:
        async for message in caller.ws:
            if not isinstance(message, str):
                continue
            if message.startswith('{"event":"media"'):
                if caller.first_audio is None:
                    caller.first_audio = time.monotonic()
            elif message.startswith('{"event":"mark"'):
                await caller.ws.send(message)
    except ConnectionClosedOK:
        # A mark that arrived as the caller hung up: Twilio would not echo it either.
        pass
    except WebSocketException as exc:
        caller.error = caller.error or f"read: {exc}"


async def _arrive(caller: _Caller, plan: Plan, http: httpx.AsyncClient) -> None:
    """Dial unless dialled ahead, then send `start` and read what the server sends."""
    if caller.ws is None:
        caller.dialled = time.monotonic()
        try:
            await _dial(caller, plan, http)
        except (OSError, httpx.HTTPError, WebSocketException, RuntimeError) as exc:
            caller.error = f"dial: {type(exc).__name__}: {exc}"
            return
    assert caller.ws is not None
    caller.started = time.monotonic()
    try:
        await caller.ws.send(caller.start_message())
    except WebSocketException as exc:
        caller.error = f"start: {exc}"
        return
    caller.next_frame = caller.started
    if plan.hold is not None:
        caller.ends_at = caller.started + plan.hold
    caller.reader = asyncio.create_task(_read(caller))


async def _play(plan: Plan, callers: list[_Caller], t0: float, http: httpx.AsyncClient) -> float:
    """Let every caller arrive and send its frames on one absolute clock; return the worst
    lateness."""
    last = t0 + plan.hang_up_at
    window_start, window_end = t0 + plan.window[0], t0 + plan.window[1]
    waiting = sorted(callers, key=lambda c: c.start_at)
    arriving: set[asyncio.Task[None]] = set()
    talking: list[_Caller] = []
    leaving: list[asyncio.Task[None]] = []
    max_lag = 0.0
    tick = t0
    while True:
        now = time.monotonic()
        max_lag = max(max_lag, now - tick)
        while waiting and waiting[0].start_at <= now:
            caller = waiting.pop(0)
            caller.ends_at = last
            arrival = asyncio.create_task(_arrive(caller, plan, http))
            arriving.add(arrival)
            arrival.add_done_callback(arriving.discard)
            talking.append(caller)
        still: list[_Caller] = []
        for caller in talking:
            if caller.started is None:
                if caller.error:
                    continue
                still.append(caller)
                continue
            assert caller.ws is not None
            while plan.media and caller.next_frame <= now and caller.next_frame < caller.ends_at:
                if window_start <= caller.next_frame < window_end:
                    caller.frames_in_window += 1
                caller.next_frame += FRAME_SECONDS
                try:
                    await caller.ws.send(caller.media_message())
                except WebSocketException as exc:
                    caller.error = caller.error or f"send: {exc}"
                    caller.next_frame = caller.ends_at
            if now >= caller.ends_at:
                leaving.append(asyncio.create_task(_hang_up(caller)))
            else:
                still.append(caller)
        talking = still
        if now >= last and not waiting and not talking:
            await asyncio.gather(*arriving, *leaving)
            return max_lag
        tick = now + _TICK
        await asyncio.sleep(max(0.0, tick - time.monotonic()))


async def _hang_up(caller: _Caller) -> None:
    if caller.ws is None:
        return
    try:
        sid = caller.stream_sid
        await caller.ws.send(f'{{"event":"stop","sequenceNumber":"0","streamSid":"{sid}"}}')
        await caller.ws.close()
    except WebSocketException:
        pass
    if caller.reader is not None:
        await asyncio.gather(caller.reader, return_exceptions=True)


async def _work(plan: Plan, offsets: list[tuple[float, str]], control: Connection) -> WorkerResult:
    cpu = time.process_time()
    loop = asyncio.get_running_loop()
    callers = [_Caller(start_at=offset, number=number) for offset, number in offsets]
    gate = asyncio.Semaphore(_CONNECTS_AT_ONCE)

    async def dial(caller: _Caller) -> None:
        async with gate:
            try:
                await _dial(caller, plan, http)
            except (OSError, httpx.HTTPError, WebSocketException, RuntimeError) as exc:
                caller.error = f"dial: {type(exc).__name__}: {exc}"

    async with httpx.AsyncClient(
        base_url=plan.base_url, timeout=30, limits=httpx.Limits(max_connections=None)
    ) as http:
        if plan.predial:
            await asyncio.gather(*(dial(c) for c in callers))
        control.send("ready")
        t0 = await loop.run_in_executor(None, control.recv)
        for caller in callers:
            caller.start_at += t0
        ready = [c for c in callers if not (plan.predial and c.ws is None)]
        max_lag = await _play(plan, ready, t0, http)
    results = tuple(
        CallResult(
            ttfa=(c.first_audio - c.started)
            if c.first_audio is not None and c.started is not None
            else None,
            frames_in_window=c.frames_in_window,
            error=c.error,
            number=c.number,
            setup=(c.started - c.dialled)
            if c.started is not None and c.dialled is not None
            else None,
        )
        for c in callers
    )
    return WorkerResult(results, max_lag, time.process_time() - cpu)


def _serve(control: Connection) -> None:
    """A caller process: run each plan it is sent until it is sent None."""
    while True:
        job = control.recv()
        if job is None:
            return
        plan, offsets = job
        control.send(asyncio.run(_work(plan, offsets, control)))


class CallerPool:
    """Processes that place calls together, so the callers' own CPU is not one core's worth."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._controls: list[Connection] = []
        self._processes = []
        for _ in range(processes):
            ours, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(theirs,), daemon=True)
            process.start()
            self._controls.append(ours)
            self._processes.append(process)

    @property
    def pids(self) -> list[int]:
        """The caller processes' ids."""
        return [process.pid for process in self._processes if process.pid is not None]

    def run(
        self,
        plan: Plan,
        *,
        at: Mapping[str, float] | None = None,
        sample: Callable[[], object] | None = None,
        lead: float = 0.3,
    ) -> tuple[list[WorkerResult], dict[str, object]]:
        """Hand out the calls, start the clock, take `sample()` at each named time after T0."""
        count = len(self._controls)
        numbers = plan.numbers or (DEFAULT_NUMBER,) * len(plan.start_offsets)
        calls = list(zip(plan.start_offsets, numbers, strict=True))
        slices = [calls[i::count] for i in range(count)]
        busy = [(c, part) for c, part in zip(self._controls, slices, strict=True) if part]
        for control, part in busy:
            control.send((plan, part))
        for control, _ in busy:
            if control.recv() != "ready":
                raise RuntimeError("a caller process failed to dial")
        t0 = time.monotonic() + lead
        for control, _ in busy:
            control.send(t0)
        samples: dict[str, object] = {}
        for name, offset in sorted((at or {}).items(), key=lambda item: item[1]):
            time.sleep(max(0.0, t0 + offset - time.monotonic()))
            assert sample is not None
            samples[name] = sample()
        return [control.recv() for control, _ in busy], samples

    def close(self) -> None:
        """Stop the caller processes."""
        for control in self._controls:
            control.send(None)
        for process in self._processes:
            process.join(timeout=10)
