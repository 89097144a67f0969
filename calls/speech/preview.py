"""Speech for people, not callers: a greeting as a WAV file, and Deepgram failures explained."""

from __future__ import annotations

from dataclasses import dataclass

from calls.speech import synthesis
from calls.speech.audio import duration_seconds, wav_from_mulaw
from calls.speech.deepgram import TTSError


@dataclass(frozen=True)
class Rendering:
    """The whole mu-law audio callers hear for one (voice, text)."""

    audio: bytes
    from_cache: bool

    @property
    def seconds(self) -> float:
        """Playing time."""
        return duration_seconds(self.audio)

    @property
    def wav(self) -> bytes:
        """The audio decoded to a 16-bit PCM WAV file, which every browser and player opens."""
        return wav_from_mulaw(self.audio)


async def render(voice: str, text: str) -> Rendering:
    """Fetch or synthesize the audio through the calls' own speech cache."""
    result = await synthesis.render(voice, text)
    assert result.audio is not None
    return Rendering(result.audio, result.from_cache)


def next_step(error: TTSError, voice: str) -> str:
    """Say what to do about a Deepgram failure, in words for the person who saw it."""
    if error.status is None and not error.retryable:
        return "Set DEEPGRAM_API_KEY in the server's environment (see .env.example) and restart it."
    if error.status == 401:
        return (
            "Deepgram refused the API key: check DEEPGRAM_API_KEY "
            "(a key from console.deepgram.com with text-to-speech access)."
        )
    if error.status == 403:
        return f"This Deepgram project may not use the voice {voice}: choose another voice."
    if error.status in (400, 422):
        return (
            f"Deepgram did not accept the voice {voice!r} or the text: choose a voice from "
            "the list (for example aura-2-thalia-en) and check the text has words to speak."
        )
    if error.status == 429:
        return "Deepgram is limiting requests for this key: wait a minute and try again."
    if error.retryable:
        return (
            "Deepgram could not be reached or is unavailable: check the network and "
            "DEEPGRAM_API_URL, then try again."
        )
    return "Try again; if it keeps failing, give Deepgram support the dg-request-id above."


def explain(error: TTSError, voice: str) -> str:
    """One readable sentence: what Deepgram said, then what to do next."""
    return f"Deepgram could not speak this: {error}. {next_step(error, voice)}"
