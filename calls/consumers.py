"""The Twilio Media Stream consumer: wires the protocol, speech and call records together."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from calls import services
from calls.models import Call, Greeting
from calls.playback import Outcome, Player, Utterance
from calls.speech import open_keyed
from calls.twilio import (
    MAX_FRAME_CHARS,
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    is_media,
    parse_event,
)

logger = logging.getLogger(__name__)

GREETING_MARK = "greeting-end"


class MediaStreamConsumer(AsyncWebsocketConsumer):
    """One Twilio bidirectional Media Stream: greets the caller, then listens for keys and marks."""

    start: Start | None = None
    player: Player | None = None
    media_frames = 0

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
                    or not is_media(text)
                    or len(text) > MAX_FRAME_CHARS
                ):
                    return message
                if self.start is None:
                    self._warn_once("media-before-start", "media before start: ignored")
                self.media_frames += 1

        await super().__call__(scope, receive_events, send)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every handler, a hop to the one
        # sync thread that queues behind other calls' writes. Our database work all runs
        # through database_sync_to_async, which closes them itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.started_at = 0.0
        self.error = ""
        self.interrupted = False
        self.from_cache: bool | None = None
        self.greeting_id: int | None = None
        self._call_row: asyncio.Task[Any] | None = None
        self._warned: set[str] = set()
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            self._warn_once("binary", "binary frame: Twilio sends only text; ignored")
            return
        try:
            event = parse_event(text_data)
        except ProtocolError as exc:
            self._warn_once(f"bad:{exc}", f"bad frame: {exc}; ignored")
            return
        await self._dispatch(event)

    async def disconnect(self, code: int) -> None:
        await self._finish()

    async def _dispatch(self, event: Any) -> None:
        if isinstance(event, Start):
            await self._on_start(event)
        elif isinstance(event, Connected | Media):
            return
        elif self.start is None:
            self._warn_once(f"{type(event).__name__}-before-start", "event before start: ignored")
        elif isinstance(event, Dtmf):
            await self._on_dtmf(event)
        elif isinstance(event, Mark):
            self._on_mark(event)
        elif isinstance(event, Stop):
            await self._finish()
            await self.close()

    async def _on_start(self, start: Start) -> None:
        if self.start is not None:
            self._warn_once("second-start", "second start: ignored")
            return
        self.start = start
        self.started_at = time.monotonic()
        params = start.custom_parameters
        self.greeting_id = _int_or_none(params.get("greeting", ""))
        self.player = Player(self.send, start.stream_sid, on_outcome=self._on_outcome)
        if params.get("speech"):
            speech = await open_keyed(params["speech"], self._describe_greeting)
            self.player.say(Utterance(speech.voice, speech.text, GREETING_MARK, speech=speech))
        else:
            voice, text = await self._describe_greeting()
            self.player.say(Utterance(voice, text, GREETING_MARK))
        # The Call row is written once the greeting is under way: database writes share one
        # thread, and the greeting's look-up must not queue behind other calls' rows.
        self._call_row = asyncio.get_running_loop().create_task(
            database_sync_to_async(services.call_start)(
                call_sid=start.call_sid,
                stream_sid=start.stream_sid,
                from_number=params.get("from", ""),
                to_number=params.get("to", ""),
                greeting_id=self.greeting_id,
            )
        )

    async def _describe_greeting(self) -> tuple[str, str]:
        # A read, so it may run beside the one thread that writes other calls' rows.
        greeting = await database_sync_to_async(_greeting_for, thread_sensitive=False)(
            self.greeting_id
        )
        return greeting.voice, greeting.text

    async def _on_dtmf(self, dtmf: Dtmf) -> None:
        assert self.player is not None
        if await self.player.interrupt():
            self.interrupted = True
            logger.info("call %s: caller pressed %s, greeting interrupted", self._sid, dtmf.digit)

    def _on_mark(self, mark: Mark) -> None:
        assert self.player is not None
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

    async def _finish(self) -> None:
        """Stop speaking and write the call's final state, once."""
        if self.start is None or self._call_row is None:
            return
        call_row, self._call_row = self._call_row, None
        assert self.player is not None
        await self.player.close()
        first_audio_ms = (
            (self.player.first_audio_at - self.started_at) * 1000
            if self.player.first_audio_at is not None
            else None
        )
        if self.interrupted:
            status = Call.Status.INTERRUPTED
        elif self.error and first_audio_ms is None:
            status = Call.Status.FAILED
        else:
            status = Call.Status.COMPLETED
        await asyncio.gather(call_row, return_exceptions=True)
        await database_sync_to_async(services.call_end)(
            call_sid=self.start.call_sid,
            status=status,
            error=self.error,
            first_audio_ms=first_audio_ms,
            from_cache=self.from_cache,
            interrupted=self.interrupted,
            playback_confirmed=GREETING_MARK in self.player.played_marks,
        )
        logger.info(
            "call %s: ended %s after %d caller frames", self._sid, status, self.media_frames
        )

    @property
    def _sid(self) -> str:
        return self.start.call_sid if self.start is not None else "(before start)"

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning("call %s: %s", self._sid, message)


def _greeting_for(greeting_id: int | None) -> Greeting:
    return services.greeting_get(greeting_id=greeting_id) or services.greeting_default()


def _int_or_none(value: str) -> int | None:
    return int(value) if value.isdigit() else None
