"""Plays utterances into one Twilio stream in order, with marks, and interrupts them on demand."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

from calls.speech.deepgram import TTSError
from calls.speech.synthesis import Speech, open_speech
from calls.twilio.protocol import clear_message, mark_message, media_message

logger = logging.getLogger(__name__)

Send = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Utterance:
    """Something to say: a voice and text, or speech already opened from the caches."""

    voice: str
    text: str
    mark: str
    speech: Speech | None = None


@dataclass(frozen=True)
class Outcome:
    """How one utterance went: audio sent, from where, and the error if it failed."""

    utterance: Utterance
    sent_bytes: int
    from_cache: bool | None
    error: TTSError | None


async def _nowhere(message: str) -> None:
    """Where a closed player's messages go: its stream has ended."""


class Player:
    """Sends each queued utterance's audio as `media` then its `mark`; `clear` on interrupt."""

    def __init__(
        self,
        send: Send,
        stream_sid: str,
        *,
        on_outcome: Callable[[Outcome], Awaitable[None]] | None = None,
    ) -> None:
        self._send = send
        self.stream_sid = stream_sid
        self._on_outcome = on_outcome
        self._queue: deque[Utterance] = deque()
        self._task: asyncio.Task[None] | None = None
        self.pending_marks: set[str] = set()
        self.flushed_marks: set[str] = set()
        self.played_marks: list[str] = []
        self.first_audio_at: float | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []

    @property
    def busy(self) -> bool:
        """Whether audio is being sent or is still unplayed at Twilio."""
        return bool(self._queue or self.pending_marks or (self._task and not self._task.done()))

    def say(self, utterance: Utterance) -> None:
        """Queue an utterance behind whatever is already playing."""
        self._queue.append(utterance)
        self._advance()

    async def interrupt(self) -> bool:
        """Stop the current utterance, drop the queue and flush Twilio's buffer."""
        if not self.busy:
            return False
        self._queue.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        # Twilio echoes every pending mark after a clear: those audios were flushed, not played.
        self.flushed_marks |= self.pending_marks
        await self._send(clear_message(self.stream_sid))
        return True

    async def idle(self) -> None:
        """Return once everything queued has been sent and Twilio has echoed its marks."""
        if not self.busy:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._idle_waiters:
                self._idle_waiters.remove(waiter)

    def expects(self, name: str) -> bool:
        """Whether a mark of this name was sent and not yet echoed."""
        return name in self.pending_marks or name in self.flushed_marks

    def mark_echoed(self, name: str) -> bool:
        """Note Twilio's echo of a mark; True when it means the audio really played."""
        if not self.expects(name):
            # Only our own marks are kept: a stranger's names would grow the call for ever.
            return False
        self.pending_marks.discard(name)
        self._wake_idle()
        if name in self.flushed_marks:
            self.flushed_marks.discard(name)
            return False
        self.played_marks.append(name)
        return True

    async def close(self) -> None:
        """Stop playing and cancel any Deepgram request in flight."""
        self._queue.clear()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._wake_idle(force=True)
        # The consumer holds this player, and the player held the consumer's methods: let go,
        # so an ended call is freed at once instead of at the next full garbage collection.
        self._send = _nowhere
        self._on_outcome = None

    def _advance(self) -> None:
        if (self._task is None or self._task.done()) and self._queue:
            self._task = asyncio.get_running_loop().create_task(self._play(self._queue.popleft()))
            self._task.add_done_callback(self._played)

    def _played(self, _: asyncio.Task[None]) -> None:
        self._advance()
        self._wake_idle()

    def _wake_idle(self, *, force: bool = False) -> None:
        if force or not self.busy:
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _play(self, utterance: Utterance) -> None:
        sent = 0
        from_cache: bool | None = None
        error: TTSError | None = None
        try:
            speech = utterance.speech or await open_speech(utterance.voice, utterance.text)
            from_cache = speech.from_cache
            async with aclosing(speech.chunks()) as chunks:
                async for chunk in chunks:
                    if self.first_audio_at is None:
                        self.first_audio_at = time.monotonic()
                    await self._send(media_message(self.stream_sid, chunk))
                    sent += len(chunk)
        except TTSError as exc:
            # Audio that already played cannot be retried without the caller hearing it twice.
            error = exc
        if sent:
            self.pending_marks.add(utterance.mark)
            await self._send(mark_message(self.stream_sid, utterance.mark))
        if self._on_outcome is not None:
            await self._on_outcome(Outcome(utterance, sent, from_cache, error))
