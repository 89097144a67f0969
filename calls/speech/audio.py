from __future__ import annotations

import io
import wave

__all__ = [
    "MULAW_SILENCE",
    "SAMPLE_RATE",
    "duration_seconds",
    "mulaw_to_pcm16",
    "wav_from_mulaw",
]

MULAW_SILENCE = 0xFF
SAMPLE_RATE = 8000

_BIAS = 0x84


def _decode_sample(code: int) -> int:
    """Decode one G.711 mu-law byte to a signed 16-bit sample."""
    # Mu-law bytes are transmitted bit-inverted.
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return -magnitude if code & 0x80 else magnitude


MULAW_DECODE_TABLE: tuple[int, ...] = tuple(_decode_sample(code) for code in range(256))

# bytes.translate does the table lookup in C, once for each byte of the little-endian sample.
_LOW_BYTES = bytes(sample & 0xFF for sample in MULAW_DECODE_TABLE)
_HIGH_BYTES = bytes((sample >> 8) & 0xFF for sample in MULAW_DECODE_TABLE)


def mulaw_to_pcm16(data: bytes) -> bytes:
    """Decode mu-law bytes to little-endian signed 16-bit PCM."""
    pcm = bytearray(2 * len(data))
    pcm[0::2] = data.translate(_LOW_BYTES)
    pcm[1::2] = data.translate(_HIGH_BYTES)
    return bytes(pcm)


def wav_from_mulaw(data: bytes) -> bytes:
    """Return a RIFF/WAVE file (PCM 16-bit mono 8 kHz) decoded from mu-law bytes."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(mulaw_to_pcm16(data))
    return buffer.getvalue()


def duration_seconds(mulaw: bytes) -> float:
    """Return the playing time of 8 kHz mu-law audio in seconds."""
    return len(mulaw) / SAMPLE_RATE
