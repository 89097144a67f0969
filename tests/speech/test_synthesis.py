"""Speech: caching, sharing one Deepgram stream (and one look-up), splitting long text."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

import pytest
from django.core.cache import caches
from pytest_django.fixtures import Settings

from calls.speech import synthesis
from calls.speech.cache import CACHE_ALIAS, MemoryCache, memory
from calls.speech.deepgram import TTSError
from calls.speech.synthesis import Speech, open_cached, open_keyed, open_speech, render
from calls.speech.text import speech_key, split_text
from devtools.fake_deepgram import FakeDeepgram, fake_audio


def test_short_text_is_one_piece() -> None:
    assert split_text("  Hello there.  ") == ["Hello there."]
    assert split_text("   ") == []


def test_long_text_splits_at_sentence_ends_in_order() -> None:
    sentences = [f"Sentence number {n} says something useful." for n in range(120)]
    text = " ".join(sentences)
    pieces = split_text(text)
    assert len(pieces) > 1
    assert all(len(piece) <= 2000 for piece in pieces)
    assert " ".join(pieces) == text
    assert all(piece.endswith(".") for piece in pieces)


def test_a_sentence_without_ends_is_cut_at_spaces() -> None:
    text = "word " * 900
    pieces = split_text(text)
    assert all(len(piece) <= 2000 for piece in pieces)
    assert " ".join(pieces) == text.strip()


def test_key_depends_on_voice_and_text() -> None:
    assert speech_key("a", "x") != speech_key("b", "x")
    assert speech_key("a", "x") != speech_key("a", "y")
    assert speech_key("a", "x") == speech_key("a", "x")


async def test_render_then_cached_everywhere(deepgram: FakeDeepgram) -> None:
    first = await render("aura-2-thalia-en", "Hello.")
    assert first.audio == fake_audio("aura-2-thalia-en", "Hello.")
    assert first.from_cache is False
    again = await open_speech("aura-2-thalia-en", "Hello.")
    assert again.from_cache is True
    memory.clear()  # a new process: only the shared cache has it
    cached = await open_cached(speech_key("aura-2-thalia-en", "Hello."))
    assert cached is not None
    assert cached.audio == first.audio
    assert len(deepgram.requests) == 1


async def test_long_text_is_spoken_in_order_with_one_request_per_piece(
    deepgram: FakeDeepgram,
) -> None:
    text = " ".join(f"This is sentence {n} of a long greeting." for n in range(80))
    result = await render("aura-2-thalia-en", text)
    pieces = split_text(text)
    assert [r.text for r in deepgram.requests] == pieces
    assert result.audio == b"".join(fake_audio("aura-2-thalia-en", p) for p in pieces)


async def test_failed_synthesis_is_not_cached(deepgram: FakeDeepgram) -> None:
    deepgram.fail(400, err_msg="No such model/language/tier combination found.")
    with pytest.raises(TTSError, match="No such model"):
        await render("aura-2-thalia-en", "Hello.")
    assert await open_cached(speech_key("aura-2-thalia-en", "Hello.")) is None


def test_memory_cache_evicts_least_recently_used() -> None:
    cache = MemoryCache(budget=10)
    cache.put("a", b"12345")
    cache.put("b", b"12345")
    assert cache.get("a") == b"12345"
    cache.put("c", b"12345")
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None


VOICE = "aura-asteria-en"
TEXT = "Welcome to the bakery."


async def heard(opened: Speech) -> bytes:
    audio = bytearray()
    async with aclosing(opened.chunks()) as chunks:
        async for chunk in chunks:
            audio += chunk
    return bytes(audio)


class Describer:
    """Stands in for the greeting's database read, counting how often it is asked."""

    def __init__(self, voice: str = VOICE, text: str = TEXT) -> None:
        self.voice = voice
        self.text = text
        self.asked = 0

    async def __call__(self) -> tuple[str, str]:
        self.asked += 1
        await asyncio.sleep(0.01)
        return self.voice, self.text


async def test_callers_arriving_together_share_one_lookup_and_one_request(
    deepgram: FakeDeepgram,
) -> None:
    describe = Describer()
    key = speech_key(VOICE, TEXT)
    opened = await asyncio.gather(*(open_keyed(key, describe) for _ in range(20)))
    audios = await asyncio.gather(*(heard(s) for s in opened))
    assert audios == [fake_audio(VOICE, TEXT)] * 20
    assert describe.asked == 1
    assert len(deepgram.requests) == 1
    assert not opened[0].from_cache


async def test_audio_in_the_shared_cache_needs_no_deepgram(deepgram: FakeDeepgram) -> None:
    key = speech_key(VOICE, TEXT)
    await asyncio.to_thread(caches[CACHE_ALIAS].set, key, b"\x7f" * 400, None)
    opened = await open_keyed(key, Describer())
    assert opened.from_cache
    assert await heard(opened) == b"\x7f" * 400
    assert deepgram.requests == []
    # The next caller finds it in this process' memory without any look-up.
    describe = Describer()
    assert (await open_keyed(key, describe)).from_cache
    assert describe.asked == 0


async def test_a_greeting_edited_since_the_webhook_speaks_its_new_text(
    deepgram: FakeDeepgram,
) -> None:
    opened = await open_keyed(speech_key(VOICE, "The old words."), Describer(text=TEXT))
    assert await heard(opened) == fake_audio(VOICE, TEXT)
    assert [r.text for r in deepgram.requests] == [TEXT]


async def test_a_caller_leaving_does_not_cancel_the_others_lookup(
    deepgram: FakeDeepgram,
) -> None:
    key = speech_key(VOICE, TEXT)
    describe = Describer()
    leaving = asyncio.create_task(open_keyed(key, describe))
    staying = asyncio.create_task(open_keyed(key, describe))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await heard(await staying) == fake_audio(VOICE, TEXT)
    assert describe.asked == 1


async def test_a_key_this_process_answered_starts_deepgram_with_no_await(
    deepgram: FakeDeepgram,
    settings: Settings,
    tmp_path: Path,
) -> None:
    settings.CACHES = {
        **settings.CACHES,
        CACHE_ALIAS: {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path),
            "TIMEOUT": None,
        },
    }
    key = synthesis.remember(VOICE, TEXT)

    async def unused() -> tuple[str, str]:
        raise AssertionError("the webhook already said what the key holds")

    # One step of the coroutine, no suspension: a burst of other calls cannot get in front.
    opening = open_keyed(key, unused)
    with pytest.raises(StopIteration) as opened:
        opening.send(None)
    assert await heard(opened.value.value) == fake_audio(VOICE, TEXT)
    assert len(deepgram.requests) == 1


async def test_every_caller_waiting_for_audio_hears_it_in_full() -> None:
    request = synthesis.Synthesis("key", VOICE, TEXT)
    heard: dict[int, bytes] = {}

    async def listen(number: int) -> None:
        async with aclosing(request.chunks()) as chunks:
            heard[number] = b"".join([chunk async for chunk in chunks])

    listeners = [asyncio.create_task(listen(n)) for n in range(12)]
    await asyncio.sleep(0)
    request._arrived(b"\x01" * 160)
    request._arrived(b"\x02" * 160)
    request._finished(None)
    await asyncio.gather(*listeners)
    assert heard == {n: b"\x01" * 160 + b"\x02" * 160 for n in range(12)}
