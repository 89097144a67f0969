from __future__ import annotations

import io
import struct
import wave

import pytest

from calls.speech.audio import (
    MULAW_DECODE_TABLE,
    MULAW_SILENCE,
    SAMPLE_RATE,
    duration_seconds,
    mulaw_to_pcm16,
    wav_from_mulaw,
)


def _samples(pcm: bytes) -> tuple[int, ...]:
    """Unpack little-endian signed 16-bit PCM."""
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


@pytest.mark.parametrize(
    ("code", "sample"),
    [
        (0xFF, 0),
        (0x7F, 0),
        (0x00, -32124),
        (0x80, 32124),
        (0xFE, 8),
        (0x7E, -8),
        (0xF0, 120),
        (0xEF, 132),
        (0x6F, -132),
    ],
)
def test_known_table_values(code: int, sample: int) -> None:
    assert MULAW_DECODE_TABLE[code] == sample
    assert _samples(mulaw_to_pcm16(bytes([code]))) == (sample,)


def test_silence_decodes_to_zero() -> None:
    assert MULAW_SILENCE == 0xFF
    assert _samples(mulaw_to_pcm16(bytes([MULAW_SILENCE]) * 160)) == (0,) * 160


def test_sign_bit_mirrors_the_sample() -> None:
    for code in range(256):
        assert MULAW_DECODE_TABLE[code] == -MULAW_DECODE_TABLE[code ^ 0x80]


def test_magnitude_grows_as_the_code_falls() -> None:
    positive = [MULAW_DECODE_TABLE[code] for code in range(0xFF, 0x7F, -1)]
    assert positive == sorted(positive)
    assert len(set(positive)) == 128


def test_decode_keeps_order_and_length() -> None:
    data = bytes(range(256))
    assert _samples(mulaw_to_pcm16(data)) == MULAW_DECODE_TABLE
    assert mulaw_to_pcm16(b"") == b""


def test_wav_parses_back() -> None:
    mulaw = bytes(range(256)) * 10 + bytes([MULAW_SILENCE]) * 7
    blob = wav_from_mulaw(mulaw)
    assert blob[:4] == b"RIFF"
    assert blob[8:12] == b"WAVE"
    with wave.open(io.BytesIO(blob), "rb") as wav:
        assert wav.getframerate() == SAMPLE_RATE
        assert wav.getsampwidth() == 2
        assert wav.getnchannels() == 1
        assert wav.getcomptype() == "NONE"
        assert wav.getnframes() == len(mulaw)
        assert wav.readframes(wav.getnframes()) == mulaw_to_pcm16(mulaw)


def test_empty_wav_is_valid() -> None:
    with wave.open(io.BytesIO(wav_from_mulaw(b"")), "rb") as wav:
        assert wav.getnframes() == 0


def test_duration_seconds() -> None:
    assert duration_seconds(b"") == 0.0
    assert duration_seconds(bytes(160)) == pytest.approx(0.02)
    assert duration_seconds(bytes(SAMPLE_RATE * 3)) == 3.0
