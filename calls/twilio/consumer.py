"""The Twilio Media Stream consumer: wires the protocol, speech and call records together."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from calls.live import commands, presence
from calls.models import Call, Greeting
from calls.records import queries, stale
from calls.records.recorder import recorder
from calls.server import drain
from calls.server.log_limits import LogLimiter
from calls.speech.player import Outcome, Player, Utterance
from calls.speech.synthesis import Speech, open_keyed, open_now
from calls.speech.voices import DEFAULT_VOICE
from calls.twilio import next_step
from calls.twilio.protocol import (
    GREETING_MARK,
    MAX_FRAME_CHARS,
    SAY_MARK_PREFIX,
    Connected,
    Dtmf,
    Event,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    is_media,
    is_start,
    parse_event,
)
from calls.twilio.security import (
    REFUSALS,
    TOKEN_USED,
    StreamTokenError,
    accepted,
    check_handshake,
    check_stream_token,
    claim_stream_token,
    claim_stream_token_now,
    policy,
)

logger = logging.getLogger(__name__)

# How long the call's end waits for its records before the stream closes anyway: with the
# database down they are kept and written later, and the caller must not wait for that.
RECORD_WAIT_SECONDS = 3.0


class MediaStreamConsumer(AsyncWebsocketConsumer):
    """One Twilio bidirectional Media Stream: greets the caller, then listens for keys and marks."""

    start: Start | None = None
    player: Player | None = None
    _finishing: asyncio.Task[None] | None = None
    media_frames = 0
    voice: str | None = None
    said = 0
    _live_task: asyncio.Task[None] | None = None
    _hangup_task: asyncio.Task[None] | None = None
    _hanging_up = False
    _head: _HeadStart | None = None
    _handing_over = False
    _start_timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Caller audio arrives 50 times a second for the whole call and we do not use it.
        # Channels would hand each frame to a new task and a handler lookup (await_many_dispatch,
        # dispatch, websocket_receive, receive): counted here instead, inside the one pending
        # receive, a media frame costs the server about what reading it from the socket costs.
        async def receive_events() -> dict[str, Any]:
            while True:
                message = await receive()
                text = message.get("text")
                if (
                    text is None
                    or message["type"] != "websocket.receive"
                    or len(text) > MAX_FRAME_CHARS
                ):
                    return message
                if not is_media(text):
                    if self.start is None and self._head is None and is_start(text):
                        # Under a burst of calls, Channels hands this frame to dispatch only
                        # after every other socket's read (milliseconds): open the greeting now.
                        self._head = _head_start(text)
                    return message
                if self.start is None:
                    self._log.warning("media-before-start", "media before start: ignored")
                self.media_frames += 1

        try:
            await super().__call__(scope, receive_events, send)
        except asyncio.CancelledError:
            # A server that cancels open streams when it stops: hand the call over first.
            await self._hand_over()
            raise
        finally:
            # However the consumer ends, the call leaves live control and gets its record.
            await self._finish()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every handler, a hop to the one
        # sync thread that queues behind other calls' writes. Our database work runs through
        # database_sync_to_async, which closes them itself, or through the call recorder,
        # which replaces its kept connection once it fails.
        try:
            handler = getattr(self, get_handler_name(message), None)
            if handler is None:
                raise ValueError(f"No handler for message type {message['type']}")
            await handler(message)
        except StopConsumer:
            raise
        except Exception:
            # A bug of ours in one handler must not end the caller's call.
            kind = str(message.get("type"))[:40]
            self._log.exception(f"fault:{kind}", "%s failed; the call goes on", kind)
            if message["type"] == "websocket.disconnect":
                raise StopConsumer() from None

    async def connect(self) -> None:
        self.started_at = 0.0
        self.error = ""
        self.interrupted = False
        self.from_cache: bool | None = None
        self.greeting_id: int | None = None
        self._call_row: asyncio.Future[None] | None = None
        self._log = LogLimiter(logger, lambda: self._sid)
        self._giving_up: asyncio.Task[None] | None = None
        self._utterance_writes: set[asyncio.Task[None]] = set()
        verdict = check_handshake(self.scope)
        if not accepted(verdict):
            client = (self.scope.get("client") or ["?"])[0]
            logger.warning("stream handshake from %s refused: %s", client, REFUSALS[verdict])
            # Closing before accept() answers the upgrade with HTTP 403.
            await self.close()
            return
        await self.accept()
        # A socket that never starts a call would otherwise be held open for ever.
        self._start_timer = asyncio.get_running_loop().call_later(
            settings.STREAM_START_TIMEOUT, self._no_start
        )

    def _no_start(self) -> None:
        if self.start is None:
            self._log.warning(
                "no-start", "no valid start within %g s; closing", settings.STREAM_START_TIMEOUT
            )
            self._giving_up = asyncio.get_running_loop().create_task(self.close())

    async def _hand_over(self) -> None:
        """End this stream only, so that Twilio's action request starts it on a live worker."""
        if self.start is None or self._finishing is not None:
            return
        self._handing_over = True
        logger.warning("call %s: handing the call over to another worker", self._sid)
        await next_step.note(self.start.call_sid, "resume")
        await self._finish()
        await self.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            self._log.warning("binary", "binary frame: Twilio sends only text; ignored")
            return
        head = self._head
        try:
            # The head start parsed this very frame already.
            if head is not None and head.start is not None and head.text is text_data:
                event: Event = head.start
            else:
                event = parse_event(text_data)
        except ProtocolError as exc:
            if exc.event == "start" and self.start is None:
                # Without a valid start there is no call to serve: let Twilio's TwiML go on.
                logger.warning("call %s: bad start: %s; closing", self._sid, exc)
                await self.close()
                return
            self._log.warning("bad-frame", "bad frame: %s; ignored", exc)
            return
        await self._dispatch(event)

    async def disconnect(self, code: int) -> None:
        await self._finish()
        self._log.summary()

    async def _dispatch(self, event: Any) -> None:
        if isinstance(event, Start):
            await self._on_start(event)
        elif isinstance(event, Connected | Media):
            return
        elif self.start is None:
            self._log.warning("before-start", "event before start: ignored")
        elif isinstance(event, Dtmf):
            await self._on_dtmf(event)
        elif isinstance(event, Mark):
            self._on_mark(event)
        elif isinstance(event, Stop):
            await self._end_and_close()

    async def _on_start(self, start: Start) -> None:
        if self.start is not None:
            self._log.warning("second-start", "second start: ignored")
            return
        head, self._head = self._head, None
        if head is None or head.start is not start:
            head = _HeadStart("", start, None, time.monotonic())
        params = start.custom_parameters
        if policy() == "verify":
            try:
                if head.claimed is False:
                    raise StreamTokenError(TOKEN_USED)
                if head.claimed is None:
                    await claim_stream_token(check_stream_token(start.call_sid, params))
            except StreamTokenError as exc:
                logger.warning("call %s: start refused: %s; closing", start.call_sid, exc)
                await self.close()
                return
        if self._start_timer is not None:
            self._start_timer.cancel()
        if drain.draining():
            # Told to stop: Twilio's action request starts the call on another worker.
            logger.warning("call %s: worker stopping; handing the call over", start.call_sid)
            await next_step.note(start.call_sid, "resume")
            await self.close()
            return
        self.start = start
        self.started_at = head.read_at
        drain.track(self._hand_over)
        stale.keep_sweeping()
        self.greeting_id = _int_or_none(params.get("greeting", ""))
        self.player = Player(self.send, start.stream_sid, on_outcome=self._on_outcome)
        self._live_task = asyncio.get_running_loop().create_task(self._stay_live(start.call_sid))
        if params.get("speech"):
            speech = head.speech or await open_keyed(params["speech"], self._describe_greeting)
            self.player.say(Utterance(speech.voice, speech.text, GREETING_MARK, speech=speech))
        else:
            voice, text = await self._describe_greeting()
            self.player.say(Utterance(voice, text, GREETING_MARK))
        # The Call row is queued once the greeting is under way, and written in a batch with
        # other calls' rows: the greeting's look-up must not queue behind database writes.
        self._call_row = recorder().started(
            queries.CallStarted(
                call_sid=start.call_sid,
                stream_sid=start.stream_sid,
                started_at=timezone.now(),
                from_number=params.get("from", ""),
                to_number=params.get("to", ""),
                greeting_id=self.greeting_id,
            )
        )

    async def _describe_greeting(self) -> tuple[str, str]:
        greeting = await self._greeting()
        named = self.start.custom_parameters.get("greeting") if self.start else None
        if named and greeting.pk != self.greeting_id:
            logger.warning(
                "call %s: greeting %r does not exist; speaking the default greeting",
                self._sid,
                named[:40],
            )
        return greeting.voice, greeting.text

    async def _on_dtmf(self, dtmf: Dtmf) -> None:
        assert self.player is not None
        if await self.player.interrupt():
            self.interrupted = True
            logger.info("call %s: caller pressed %s, greeting interrupted", self._sid, dtmf.digit)

    def _on_mark(self, mark: Mark) -> None:
        assert self.player is not None
        if not self.player.expects(mark.name):
            self._log.warning("unknown-mark", "echo of a mark never sent: ignored")
            return
        self.player.mark_echoed(mark.name)

    async def _on_outcome(self, outcome: Outcome) -> None:
        if outcome.utterance.mark == GREETING_MARK:
            self.from_cache = outcome.from_cache
        if outcome.error is not None:
            self.error = str(outcome.error)
            logger.warning(
                "call %s: speech failed after %d bytes: %s",
                self._sid,
                outcome.sent_bytes,
                outcome.error,
            )
            if outcome.utterance.mark == GREETING_MARK and outcome.sent_bytes == 0:
                # The caller heard nothing: end the stream so Twilio reads the greeting itself.
                self._giving_up = asyncio.get_running_loop().create_task(self._end_and_close("say"))

    async def _end_and_close(self, step: next_step.Step = "hangup") -> None:
        """Write the call's final state, then close the stream (Twilio's TwiML goes on)."""
        if self.start is not None:
            await next_step.note(self.start.call_sid, step)
        await self._finish()
        await self.close()

    async def _finish(self) -> None:
        """Stop speaking and write the call's final state, once."""
        if self._start_timer is not None:
            self._start_timer.cancel()
        if self._finishing is None:
            if self.start is None:
                return
            # A stream that ended during its own start has no record yet, only live control.
            ending = self._end_call() if self._call_row is not None else self._end_start()
            self._finishing = asyncio.get_running_loop().create_task(ending)
        # Shielded: a server being stopped cancels this consumer, but the record must be written.
        await asyncio.shield(self._finishing)

    async def _end_start(self) -> None:
        assert self.start is not None
        drain.untrack(self._hand_over)
        await self._leave(self.start.call_sid)
        if self.player is not None:
            await self.player.close()

    async def _end_call(self) -> None:
        assert self.start is not None and self._call_row is not None
        drain.untrack(self._hand_over)
        call_row, self._call_row = self._call_row, None
        await self._leave(self.start.call_sid)
        assert self.player is not None
        await self.player.close()
        first_audio_ms = (
            (self.player.first_audio_at - self.started_at) * 1000
            if self.player.first_audio_at is not None
            else None
        )
        if self.interrupted:
            status = Call.Status.INTERRUPTED
        elif self.error and GREETING_MARK not in self.player.played_marks:
            # Nothing played, or the greeting broke off unconfirmed (the server stopping, say).
            status = Call.Status.FAILED
        else:
            status = Call.Status.COMPLETED
        await _settled(call_row)
        if self._handing_over:
            # The call goes on in the next stream, which keeps this row.
            logger.info("call %s: stream handed over", self._sid)
            return
        await _settled(
            recorder().ended(
                queries.CallEnded(
                    call_sid=self.start.call_sid,
                    status=status,
                    ended_at=timezone.now(),
                    error=self.error,
                    first_audio_ms=first_audio_ms,
                    from_cache=self.from_cache,
                    interrupted=self.interrupted,
                    playback_confirmed=GREETING_MARK in self.player.played_marks,
                )
            )
        )
        said_and_played = [m for m in self.player.played_marks if m.startswith(SAY_MARK_PREFIX)]
        if self._utterance_writes:
            await asyncio.wait(self._utterance_writes, timeout=RECORD_WAIT_SECONDS)
        if said_and_played:
            try:
                await database_sync_to_async(queries.utterances_played)(
                    call_sid=self.start.call_sid, marks=said_and_played
                )
            except DatabaseError as exc:
                self._log.warning("utterance-record", "playback could not be recorded: %s", exc)
        logger.info(
            "call %s: ended %s after %d caller frames", self._sid, status, self.media_frames
        )

    async def call_say(self, event: dict[str, Any]) -> None:
        """Speak text sent through calls.live.commands to this call, after what is queued."""
        # Its sender answered 503 already: carrying it out now would make that a lie.
        if commands.expired(event):
            return
        refusal = self._say_refusal(event)
        if refusal is not None:
            await commands.reply(event.get("reply_to"), refusal)
            return
        assert self.player is not None and self.start is not None
        text = event["text"]
        if event.get("interrupt"):
            await self.player.interrupt()
            self._speech_budget.clear()
        voice = event.get("voice") or await self._call_voice()
        self.said += 1
        mark = f"{SAY_MARK_PREFIX}{self.said}"
        self.player.say(Utterance(voice, text, mark))
        self._speech_budget.add(self.said, text)
        await commands.reply(event.get("reply_to"), commands.Reply("accepted"))
        logger.info("call %s: saying %d characters as %s", self._sid, len(text), mark)
        # In the background: this consumer's messages (marks, keys, commands) are handled one at
        # a time, and must not wait for the database.
        writing = asyncio.get_running_loop().create_task(
            self._record_utterance(text, voice, mark, interrupt=bool(event.get("interrupt")))
        )
        self._utterance_writes.add(writing)
        writing.add_done_callback(self._utterance_writes.discard)

    async def _record_utterance(self, text: str, voice: str, mark: str, *, interrupt: bool) -> None:
        """Write what was said into the call's record, once the call's row is there."""
        assert self.start is not None
        if self._call_row is not None:
            await asyncio.wait([self._call_row], timeout=RECORD_WAIT_SECONDS)
        try:
            await database_sync_to_async(queries.utterance_record)(
                call_sid=self.start.call_sid, text=text, voice=voice, mark=mark, interrupt=interrupt
            )
        except DatabaseError as exc:
            self._log.warning("utterance-record", "what was said could not be recorded: %s", exc)

    async def call_clear(self, event: dict[str, Any]) -> None:
        """Stop the speech playing now and drop what is queued, as calls.live.commands asked."""
        if commands.expired(event):
            return
        if not self._controllable("clear"):
            await commands.reply(event.get("reply_to"), _ENDED)
            return
        assert self.player is not None
        self._speech_budget.clear()
        await commands.reply(event.get("reply_to"), commands.Reply("accepted"))
        if await self.player.interrupt():
            logger.info("call %s: speech cleared on request", self._sid)

    async def call_hangup(self, event: dict[str, Any]) -> None:
        """End the call once queued speech has played, as calls.live.commands asked."""
        if commands.expired(event):
            return
        if not self._controllable("hangup"):
            await commands.reply(event.get("reply_to"), _ENDED)
            return
        # Waiting here would stall this consumer's loop, and with it the mark echoes.
        self._hangup_task = asyncio.get_running_loop().create_task(self._hang_up())
        await commands.reply(event.get("reply_to"), commands.Reply("accepted"))

    async def _hang_up(self) -> None:
        assert self.player is not None
        await self.player.idle()
        self._hanging_up = True
        logger.info("call %s: hanging up on request", self._sid)
        await self._end_and_close()

    def _controllable(self, action: str) -> bool:
        if self.player is None or self._call_row is None or self._hangup_task is not None:
            self._log.warning("late-command", "%s after the call ended or hung up: refused", action)
            return False
        return True

    async def _call_voice(self) -> str:
        if self.voice is None:
            try:
                return (await self._greeting()).voice
            except DatabaseError:
                # The database is down: the call still speaks, in the default voice.
                return DEFAULT_VOICE
        return self.voice

    async def _greeting(self) -> Greeting:
        """Return the call's greeting, or the default one when it names none that exists."""
        greeting = await database_sync_to_async(_greeting_or_default)(self.greeting_id)
        self.voice = greeting.voice
        return greeting

    async def _stay_live(self, call_sid: str) -> None:
        """Announce the call live on this consumer's channel, refreshed with the worker's others."""
        try:
            await presence.announce(call_sid, self.channel_name)
        except Exception:
            # The call itself goes on; only its live control is lost.
            logger.warning("call %s: live control unavailable", call_sid, exc_info=True)

    async def _leave(self, call_sid: str) -> None:
        """Stop being reachable for live control."""
        hangup = self._hangup_task
        if hangup is not None and not self._hanging_up:
            # The call ended some other way while a hang-up still waited for its speech.
            hangup.cancel()
        task, self._live_task = self._live_task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            await presence.withdraw(call_sid)
        except Exception:
            logger.warning("call %s: could not withdraw from live control", call_sid, exc_info=True)

    @property
    def _sid(self) -> str:
        return self.start.call_sid if self.start is not None else "(before start)"

    def _say_refusal(self, event: dict[str, Any]) -> commands.Reply | None:
        """Why this call cannot take the `say` in `event` now, or None."""
        if not self._controllable("say"):
            return _ENDED
        try:
            text = commands.check_text(event.get("text"))
        except commands.InvalidCommand as exc:
            return commands.Reply("invalid", str(exc))
        if event.get("interrupt"):
            return None
        budget = self._speech_budget
        assert self.player is not None
        if not self.player.busy:
            budget.clear()
        else:
            budget.played_through(_last_said(self.player.played_marks))
        refusal = budget.refusal(text)
        return commands.Reply("busy", refusal) if refusal is not None else None

    @cached_property
    def _speech_budget(self) -> commands.SpeechBudget:
        """What this call has queued to say and not yet heard."""
        return commands.SpeechBudget()


@dataclass(frozen=True)
class _HeadStart:
    """A `start` frame parsed as it was read, and its greeting if it opened with no await."""

    text: str
    start: Start | None
    speech: Speech | None
    read_at: float
    # Whether the stream token was unused when claimed here; None when it was not claimed here.
    claimed: bool | None = None


def _head_start(text: str) -> _HeadStart:
    """Parse a `start` and open its greeting now when its token holds and no await is needed."""
    read_at = time.monotonic()
    try:
        start = parse_event(text)
    except ProtocolError:
        start = None
    if not isinstance(start, Start):
        # receive() parses it again and says what is wrong.
        return _HeadStart(text, None, None, read_at)
    key = start.custom_parameters.get("speech")
    if not key:
        return _HeadStart(text, start, None, read_at)
    claimed = None
    if policy() == "verify":
        # Only a genuine, unused token may start a Deepgram request: a replayed start would
        # otherwise ask again for speech whose first request was cancelled.
        try:
            claimed = claim_stream_token_now(
                check_stream_token(start.call_sid, start.custom_parameters)
            )
        except StreamTokenError:
            # Refused in _on_start; nothing is spoken for it.
            return _HeadStart(text, start, None, read_at)
        if not claimed:
            return _HeadStart(text, start, None, read_at, claimed)
    return _HeadStart(text, start, open_now(key), read_at, claimed)


async def _settled(record: asyncio.Future[None]) -> None:
    """Wait a little for a record to be written; it is kept and written later if not."""
    await asyncio.wait([record], timeout=RECORD_WAIT_SECONDS)
    if record.done() and not record.cancelled():
        record.exception()


_ENDED = commands.Reply("ended", "the call is hanging up or has ended")


def _last_said(marks: list[str]) -> int:
    """The number of the latest `say` whose mark was played, or 0."""
    for mark in reversed(marks):
        if mark.startswith(SAY_MARK_PREFIX):
            return int(mark.removeprefix(SAY_MARK_PREFIX))
    return 0


def _greeting_or_default(greeting_id: int | None) -> Greeting:
    return queries.greeting_get(greeting_id=greeting_id) or queries.greeting_default()


def _int_or_none(value: str) -> int | None:
    return int(value) if value.isdigit() else None
