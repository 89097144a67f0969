"""`manage.py speak`: one Deepgram Aura synthesis to a WAV file, to try a voice or check the key."""

from __future__ import annotations

import asyncio
import sys
import time
from argparse import ArgumentParser
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from calls.speech.audio import SAMPLE_RATE, duration_seconds, wav_from_mulaw
from calls.speech.deepgram import TTSError, close_connections, get_tts
from calls.speech.preview import explain
from calls.speech.text import split_text
from calls.speech.voices import DEFAULT_VOICE, VOICE_CHOICES

KNOWN_VOICES = frozenset(value for _, group in VOICE_CHOICES for value, _ in group)


class Command(BaseCommand):
    help = (
        "Speak some text with a Deepgram Aura voice, exactly as callers would hear it (8 kHz "
        "mu-law, decoded to a 16-bit PCM WAV file). Always asks Deepgram, never the cache, so it "
        "also checks DEEPGRAM_API_KEY and DEEPGRAM_API_URL."
    )

    # A missing key is reported by the command itself, with what to do about it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "text", nargs="?", default="", help='The words to speak; "-" reads them from stdin.'
        )
        parser.add_argument(
            "--voice",
            default=DEFAULT_VOICE,
            metavar="VOICE",
            help="The Aura voice, for example aura-2-thalia-en (default %(default)s). "
            "--list-voices shows the voices the admin offers.",
        )
        parser.add_argument(
            "--out",
            type=Path,
            metavar="FILE.wav",
            default=Path("speech.wav"),
            help="The WAV file to write (default %(default)s).",
        )
        parser.add_argument(
            "--list-voices",
            action="store_true",
            help="Print the voices greetings can use and exit.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list_voices"]:
            for group, voices in VOICE_CHOICES:
                self.stdout.write(f"{group}:")
                for value, label in voices:
                    self.stdout.write(f"  {value:<24} {label}")
            return
        text = sys.stdin.read() if options["text"] == "-" else options["text"]
        if not text.strip():
            raise CommandError('There is nothing to speak: give the words, e.g. speak "Hello."')
        voice = options["voice"]
        if voice not in KNOWN_VOICES:
            self.stderr.write(
                f"{voice} is not among the voices the admin offers (see --list-voices); "
                "asking Deepgram anyway."
            )
        self.stderr.write(
            f"Asking Deepgram ({settings.DEEPGRAM_API_URL}) to speak {len(text)} characters "
            f"with {voice}…"
        )
        started = time.monotonic()
        try:
            audio = asyncio.run(_synthesize(voice, text, self._progress))
        except TTSError as exc:
            raise CommandError(explain(exc, voice)) from exc
        elapsed = time.monotonic() - started
        out: Path = options["out"]
        try:
            out.write_bytes(wav_from_mulaw(audio))
        except OSError as exc:
            raise CommandError(f"Could not write {out}: {exc}") from exc
        self.stdout.write(
            f"wrote {out}: {duration_seconds(audio):.2f} s of speech "
            f"({len(audio)} bytes of 8 kHz mu-law) in {elapsed:.2f} s"
        )

    def _progress(self, received: int) -> None:
        self.stderr.write(f"  {received / SAMPLE_RATE:.1f} s of audio received")


async def _synthesize(voice: str, text: str, progress: Callable[[int], None]) -> bytes:
    """Stream every piece of the text from Deepgram, reporting each second of audio received."""
    audio = bytearray()
    reported = 0
    try:
        for piece in split_text(text):
            async with aclosing(get_tts().stream(voice, piece)) as stream:
                async for chunk in stream:
                    audio += chunk
                    if len(audio) - reported >= SAMPLE_RATE:
                        reported = len(audio)
                        progress(reported)
    finally:
        await close_connections()
    return bytes(audio)
