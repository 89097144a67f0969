"""Speech for a (voice, text): from memory or the shared cache, else one Deepgram stream shared
by every caller who asks for it while it is in flight."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.core.cache import caches

from calls.server.cache_calls import runs_inline
from calls.server.per_loop import PerLoop
from calls.speech import deepgram_io
from calls.speech.cache import CACHE_ALIAS, from_shared, kept, memory, shared_set
from calls.speech.deepgram import TTSError, get_tts
from calls.speech.text import speech_key, split_text

logger = logging.getLogger(__name__)

# One second of 8 kHz mu-law: the most audio one Twilio `media` message carries.
MAX_CHUNK_BYTES = 8000


class Synthesis:
    """One Deepgram rendering in flight; any number of listeners read it from the start."""

    def __init__(self, key: str, voice: str, text: str) -> None:
        self.key = key
        self.voice = voice
        self.text = text
        self.buffer = bytearray()
        self.done = False
        self.error: TTSError | None = None
        self.listeners = 0
        # Listeners waiting for more audio, in the order they began to wait.
        self._waiting: list[asyncio.Future[None]] = []
        self._owner: asyncio.AbstractEventLoop | None = None
        self._fetch: concurrent.futures.Future[None] | None = None

    def start(self) -> None:
        """Ask Deepgram from its own loop; the audio comes back to this loop as it arrives."""
        self._owner = asyncio.get_running_loop()
        self._fetch = deepgram_io.submit(self._fetch_all())

    async def _fetch_all(self) -> None:
        """Stream every piece of the text into the buffer, then cache the whole (Deepgram loop)."""
        audio = bytearray()
        error: TTSError | None = None
        tts = get_tts()
        try:
            for piece in split_text(self.text):
                async with aclosing(tts.stream(self.voice, piece)) as stream:
                    async for chunk in stream:
                        audio += chunk
                        self._to_owner(self._arrived, chunk)
        except TTSError as exc:
            error = exc
        except Exception as exc:
            logger.exception("speech for %s failed", self.key)
            error = TTSError(f"speech failed unexpectedly ({type(exc).__name__})")
        if error is None and audio:
            # Cached before the synthesis leaves the in-flight table: no second request, and
            # whoever waited for the whole audio finds it in every cache.
            whole = bytes(audio)
            memory.put(self.key, whole)
            try:
                await shared_set(self.key, whole)
            except Exception:
                logger.warning("speech %s not kept in the shared cache", self.key, exc_info=True)
        self._to_owner(self._finished, error)

    def _to_owner(self, callback: Callable[..., None], *args: object) -> None:
        assert self._owner is not None
        # RuntimeError: the loop that asked has closed, and nobody is left to hear the speech.
        with contextlib.suppress(RuntimeError):
            self._owner.call_soon_threadsafe(callback, *args)

    def _arrived(self, chunk: bytes) -> None:
        self.buffer += chunk
        self._wake()

    def _finished(self, error: TTSError | None) -> None:
        self.error = error
        self.done = True
        self._wake()
        self._leave_inflight()

    def _leave_inflight(self) -> None:
        if _inflight().get(self.key) is self:
            del _inflight()[self.key]

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """Yield the audio from its first byte, waiting for Deepgram as needed."""
        self.listeners += 1
        offset = 0
        try:
            while True:
                if offset < len(self.buffer):
                    end = min(len(self.buffer), offset + MAX_CHUNK_BYTES)
                    chunk = bytes(self.buffer[offset:end])
                    offset = end
                    yield chunk
                elif self.done:
                    if self.error is not None:
                        raise self.error
                    return
                else:
                    more = asyncio.get_running_loop().create_future()
                    self._waiting.append(more)
                    await more
        finally:
            self.listeners -= 1
            # Nobody is listening any more (the caller interrupted or hung up): stop paying.
            if self.listeners == 0 and not self.done and self._fetch is not None:
                self._fetch.cancel()
                self._leave_inflight()

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for more in waiting:
            if not more.done():
                more.set_result(None)


@dataclass(frozen=True)
class Speech:
    """Audio for one utterance: already whole (cached) or streaming from Deepgram."""

    voice: str
    text: str
    from_cache: bool
    audio: bytes | None = None
    synthesis: Synthesis | None = None

    def chunks(self) -> AsyncGenerator[bytes, None]:
        """Yield the audio in pieces of at most one second."""
        if self.audio is not None:
            return _pieces(self.audio)
        assert self.synthesis is not None
        # The synthesis' own reader, with no generator in between: under a burst every layer
        # is paid once per waiting caller before the last of them hears the first audio.
        return self.synthesis.chunks()


async def _pieces(audio: bytes) -> AsyncGenerator[bytes, None]:
    """Yield whole audio in pieces of at most one second."""
    for start in range(0, len(audio), MAX_CHUNK_BYTES):
        yield audio[start : start + MAX_CHUNK_BYTES]


# Syntheses in flight, and cache look-ups under way, by speech key.
_inflight: PerLoop[dict[str, Synthesis]] = PerLoop(dict)
_opening: PerLoop[dict[str, asyncio.Task[Speech]]] = PerLoop(dict)


async def open_cached(key: str) -> Speech | None:
    """Return speech already rendered or rendering under this key, or None."""
    speech = _open_in_process(key)
    if speech is None and (audio := await from_shared(key)) is not None:
        speech = Speech("", "", from_cache=True, audio=audio)
    return speech


async def open_speech(voice: str, text: str) -> Speech:
    """Find or start the audio for (voice, text); Deepgram is asked at most once at a time."""
    key = speech_key(voice, text)
    speech = await open_cached(key)
    if speech is not None:
        return Speech(voice, text, speech.from_cache, speech.audio, speech.synthesis)
    return _synthesize(key, voice, text)


def _synthesize(key: str, voice: str, text: str) -> Speech:
    """Join the synthesis of `key` in flight, or start it: no cache holds it."""
    # The caller's cache look-up awaited: someone may have started this synthesis meanwhile.
    synthesis = _inflight().get(key)
    if synthesis is None:
        synthesis = Synthesis(key, voice, text)
        _inflight()[key] = synthesis
        synthesis.start()
    return Speech(voice, text, from_cache=False, synthesis=synthesis)


Describe = Callable[[], Awaitable[tuple[str, str]]]

# What each speech key says, for the keys this process handed out; content-addressed, so never
# stale. Plain dict operations are atomic, and webhook views write it from worker threads.
_described: dict[str, tuple[str, str]] = {}
_DESCRIBED_LIMIT = 4096


def remember(voice: str, text: str) -> str:
    """Return the key of the speech for (voice, text), noting what it says for this process."""
    key = speech_key(voice, text)
    if key not in _described:
        if len(_described) >= _DESCRIBED_LIMIT:
            _described.clear()
        _described[key] = (voice, text)
    return key


async def open_keyed(key: str, describe: Describe) -> Speech:
    """Open the speech stored under `key`, else the (voice, text) that `describe()` names.

    Callers who ask for one key together share one look-up: a burst of calls answered with
    the same new greeting makes one shared-cache read, one `describe()` and one Deepgram request.
    """
    speech = open_now(key)
    if speech is not None:
        return speech
    opening = _opening().get(key)
    if opening is None:
        opening = asyncio.get_running_loop().create_task(_open_keyed(key, describe))
        _opening()[key] = opening
        opening.add_done_callback(lambda _: _opening().pop(key, None))
    # One caller hanging up must not cancel the look-up the others wait for.
    return await asyncio.shield(opening)


def open_now(key: str) -> Speech | None:
    """Open `key` with no await, if this process can: from memory, in flight, or described."""
    return _open_in_process(key) or _open_known_now(key)


def _open_in_process(key: str) -> Speech | None:
    audio = memory.get(key)
    if audio is not None:
        return Speech("", "", from_cache=True, audio=audio)
    synthesis = _inflight().get(key)
    if synthesis is not None:
        return Speech(synthesis.voice, synthesis.text, from_cache=False, synthesis=synthesis)
    return None


def _open_known_now(key: str) -> Speech | None:
    """Open a key this process answered the webhook for, when no read needs to wait.

    With the file cache a burst of calls opens its greeting with no await: the first
    caller's Deepgram request is under way before the rest of the burst is handled.
    """
    known = _described.get(key)
    if known is None or not runs_inline(CACHE_ALIAS, "get"):
        return None
    return _speech_for(key, *known, kept(key, caches[CACHE_ALIAS].get(key)))


async def _open_keyed(key: str, describe: Describe) -> Speech:
    known = _described.get(key)
    if known is not None:
        # This process answered the webhook: no database read in front of the first audio.
        audio = await from_shared(key)
        voice, text = known
    else:
        # Both reads are needed on a miss; the first caller of a burst waits for them together.
        audio, (voice, text) = await asyncio.gather(from_shared(key), describe())
    # None: the greeting changed since the call was answered; speak what it says now.
    return _speech_for(key, voice, text, audio) or await open_speech(voice, text)


def _speech_for(key: str, voice: str, text: str, audio: bytes | None) -> Speech | None:
    """The speech under `key`, given what the shared cache held; None if it no longer says it."""
    if audio is not None:
        return Speech(voice, text, from_cache=True, audio=audio)
    if speech_key(voice, text) != key:
        return None
    return _synthesize(key, voice, text)


async def render(voice: str, text: str) -> Speech:
    """Synthesize (or fetch) the whole audio for (voice, text) and return it complete."""
    speech = await open_speech(voice, text)
    if speech.audio is not None:
        return speech
    parts = bytearray()
    async with aclosing(speech.chunks()) as chunks:
        async for chunk in chunks:
            parts += chunk
    return Speech(voice, text, from_cache=False, audio=bytes(parts))


def render_ahead(voice: str, text: str) -> None:
    """Render (voice, text) into the caches from synchronous code, such as an admin view.

    Under daphne this runs on the server's event loop, so it joins any synthesis of the same
    speech already in flight for a call, and reuses the warm Deepgram connections.
    """
    async_to_sync(render)(voice, text)
