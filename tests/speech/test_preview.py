"""Greeting audio for people: the WAV rendering and Deepgram failures explained."""

from __future__ import annotations

import io
import wave

import pytest

from calls.speech import preview
from calls.speech.deepgram import TTSError
from devtools.fake_deepgram import FakeDeepgram, fake_audio


async def test_render_goes_through_the_speech_cache(deepgram: FakeDeepgram) -> None:
    first = await preview.render("aura-2-thalia-en", "Welcome to the bakery.")
    again = await preview.render("aura-2-thalia-en", "Welcome to the bakery.")
    audio = fake_audio("aura-2-thalia-en", "Welcome to the bakery.")
    assert (first.audio, first.from_cache) == (audio, False)
    assert (again.audio, again.from_cache) == (audio, True)
    assert first.seconds == len(audio) / 8000
    with wave.open(io.BytesIO(first.wav)) as reader:
        assert reader.getnframes() == len(audio)
    assert len(deepgram.requests) == 1


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        (TTSError("DEEPGRAM_API_KEY is not set"), "Set DEEPGRAM_API_KEY"),
        (
            TTSError("Deepgram answered 401: Invalid credentials.", status=401),
            "check DEEPGRAM_API_KEY",
        ),
        (TTSError("Deepgram answered 403", status=403), "may not use the voice aura-x-en"),
        (TTSError("Deepgram answered 400", status=400), "choose a voice from the list"),
        (TTSError("Deepgram answered 429", status=429, retryable=True), "wait a minute"),
        (TTSError("Deepgram answered 503", status=503, retryable=True), "DEEPGRAM_API_URL"),
        (TTSError("Deepgram timed out (ReadTimeout)", retryable=True), "DEEPGRAM_API_URL"),
        (TTSError("Deepgram answered 418", status=418, request_id="r-1"), "dg-request-id"),
    ],
)
def test_every_failure_says_what_to_do_next(error: TTSError, advice: str) -> None:
    message = preview.explain(error, "aura-x-en")
    assert message.startswith(f"Deepgram could not speak this: {error}.")
    assert advice in message
