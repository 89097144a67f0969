"""What speech is named by (its key) and how long text is cut into pieces Deepgram accepts."""

from __future__ import annotations

import hashlib
import re

from calls.speech.deepgram import MAX_TEXT_CHARS

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def speech_key(voice: str, text: str) -> str:
    """Name the audio for (voice, text): content-addressed, so it never goes stale."""
    digest = hashlib.sha256(f"{voice}\0{text}".encode()).hexdigest()
    return f"mulaw8k:v1:{digest}"


def split_text(text: str, limit: int = MAX_TEXT_CHARS) -> list[str]:
    """Split text into pieces Deepgram accepts, at sentence ends where it can."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        for part in _split_long(sentence, limit):
            if current and len(current) + 1 + len(part) > limit:
                pieces.append(current)
                current = part
            else:
                current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def _split_long(sentence: str, limit: int) -> list[str]:
    """Cut one over-long sentence at spaces (or anywhere, if it has none)."""
    parts: list[str] = []
    while len(sentence) > limit:
        cut = sentence.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        parts.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        parts.append(sentence)
    return parts
