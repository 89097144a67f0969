"""Twilio-shaped Media Streams frames for driving the consumer in tests."""

from __future__ import annotations

import base64
import json

STREAM_SID = "MZ" + "0" * 31 + "1"
CALL_SID = "CA" + "0" * 31 + "1"
ACCOUNT_SID = "AC" + "0" * 32


def connected() -> str:
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start(params: dict[str, str] | None = None, *, call_sid: str = CALL_SID) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": ACCOUNT_SID,
                "streamSid": STREAM_SID,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": params or {},
            },
            "streamSid": STREAM_SID,
        }
    )


def media(n: int = 1) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(n + 1),
            "media": {
                "track": "inbound",
                "chunk": str(n),
                "timestamp": str(20 * n),
                "payload": base64.b64encode(b"\xff" * 160).decode(),
            },
            "streamSid": STREAM_SID,
        }
    )


def dtmf(digit: str = "1") -> str:
    return json.dumps(
        {
            "event": "dtmf",
            "streamSid": STREAM_SID,
            "sequenceNumber": "9",
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def mark(name: str) -> str:
    return json.dumps(
        {"event": "mark", "sequenceNumber": "9", "streamSid": STREAM_SID, "mark": {"name": name}}
    )


def stop(call_sid: str = CALL_SID) -> str:
    return json.dumps(
        {
            "event": "stop",
            "sequenceNumber": "99",
            "stop": {"accountSid": ACCOUNT_SID, "callSid": call_sid},
            "streamSid": STREAM_SID,
        }
    )
