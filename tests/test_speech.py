"""Speech: caching, sharing one Deepgram stream, and splitting long text."""

from __future__ import annotations

import pytest

from calls import speech
from calls.fake_deepgram import FakeDeepgram, fake_audio
from calls.speech import open_cached, open_speech, render, speech_key, split_text
from calls.tts import TTSError


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
    speech.memory.clear()  # a new process: only the shared cache has it
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
    cache = speech._MemoryCache(budget=10)
    cache.put("a", b"12345")
    cache.put("b", b"12345")
    assert cache.get("a") == b"12345"
    cache.put("c", b"12345")
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None
