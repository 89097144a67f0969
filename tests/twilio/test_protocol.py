"""Parsing Twilio's Media Streams messages and building ours."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calls.twilio.protocol import (
    MAX_FRAME_CHARS,
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    clear_message,
    is_media,
    is_start,
    mark_message,
    media_message,
    parse_event,
)

SID = "MZ" + "a" * 32
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC" + "b" * 32,
        "streamSid": SID,
        "callSid": "CA" + "c" * 32,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"greeting": "1", "to": "+15550100"},
    },
    "streamSid": SID,
}


def frame(message: dict) -> str:
    return json.dumps(message)


def test_connected() -> None:
    assert parse_event('{"event":"connected","protocol":"Call","version":"1.0.0"}') == Connected(
        protocol="Call"
    )


def test_start_carries_sids_and_parameters() -> None:
    event = parse_event(frame(START))
    assert event == Start(
        stream_sid=SID,
        call_sid="CA" + "c" * 32,
        account_sid="AC" + "b" * 32,
        custom_parameters={"greeting": "1", "to": "+15550100"},
    )


def test_start_without_parameters() -> None:
    message = json.loads(frame(START))
    del message["start"]["customParameters"]
    event = parse_event(frame(message))
    assert isinstance(event, Start)
    assert event.custom_parameters == {}


def test_media_payload_is_decoded() -> None:
    payload = base64.b64encode(b"\xff" * 160).decode()
    text = frame(
        {
            "event": "media",
            "sequenceNumber": "4",
            "media": {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": payload},
            "streamSid": SID,
        }
    )
    assert parse_event(text) == Media(stream_sid=SID, payload=b"\xff" * 160)
    assert is_media(text)


def test_dtmf_mark_stop() -> None:
    dtmf = {"event": "dtmf", "streamSid": SID, "sequenceNumber": 5,
            "dtmf": {"track": "inbound_track", "digit": "1"}}  # fmt: skip
    assert parse_event(frame(dtmf)) == Dtmf(stream_sid=SID, digit="1")
    mark = {"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {"name": "x"}}
    assert parse_event(frame(mark)) == Mark(stream_sid=SID, name="x")
    stop = {"event": "stop", "sequenceNumber": "5", "streamSid": SID,
            "stop": {"accountSid": "AC1", "callSid": "CA1"}}  # fmt: skip
    assert parse_event(frame(stop)) == Stop(stream_sid=SID)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"event": "hello"}', "unknown event"),
        ("{}", "no event"),
        ('{"event": "start"}', "start is missing"),
        ('{"event": "start", "start": {"streamSid": "MZ1"}}', "callSid"),
        ('{"event": "start", "start": {"streamSid": "MZ 1", "callSid": "CA1"}}', "streamSid"),
        (
            '{"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1",'
            ' "customParameters": [1]}}',
            "customParameters",
        ),  # fmt: skip
        ('{"event": "media", "media": {"payload": "***"}}', "base64"),
        ('{"event": "media", "media": {"payload": 5}}', "payload"),
        ('{"event": "dtmf", "dtmf": {"digit": "12"}}', "not a key"),
        ('{"event": "mark", "mark": {}}', "name"),
        ("[" * 100_000, "over"),
    ],
)
def test_bad_frames_raise_protocol_error(text: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_event(text)


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_protocol_error(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        parse_event(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "other", 3, None]),
    st.dictionaries(
        st.sampled_from(["start", "media", "dtmf", "mark", "stop", "streamSid", "protocol"]),
        json_values,
        max_size=5,
    ),
)
def test_any_json_object_parses_or_raises_protocol_error(event: object, body: dict) -> None:
    with contextlib.suppress(ProtocolError):
        parse_event(json.dumps({"event": event, **body}))


def test_frame_size_limit() -> None:
    assert MAX_FRAME_CHARS == 65536


def test_outbound_messages_have_exactly_twilios_fields() -> None:
    assert json.loads(media_message(SID, b"\x01\x02")) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": "AQI="},
    }
    assert json.loads(mark_message(SID, 'say "hi"')) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": 'say "hi"'},
    }
    assert json.loads(clear_message(SID)) == {"event": "clear", "streamSid": SID}


def test_is_media_rejects_other_events() -> None:
    assert not is_media('{"event":"mark","mark":{"name":"media"}}')
    assert is_media('{ "event" : "media", "media": {}}')


def test_is_start_tells_the_start_frame_from_others() -> None:
    assert is_start('{"event":"start","start":{}}')
    assert is_start(' { "event" : "start" }')
    assert not is_start('{"event":"mark","mark":{"name":"start"}}')
    assert not is_start('{"event":"media","media":{}}')


@given(
    st.sampled_from(["streamSid", "callSid", "accountSid", "customParameters"]),
    json_values,
)
def test_any_start_body_gives_a_start_or_an_error_naming_start(field: str, value: object) -> None:
    message = json.loads(frame(START))
    message["start"][field] = value
    try:
        event = parse_event(frame(message))
    except ProtocolError as exc:
        # The consumer closes the stream for a broken start and ignores other bad frames.
        assert exc.event == "start"
    else:
        assert isinstance(event, Start)


@given(
    st.text(max_size=20).filter(
        lambda e: e not in {"connected", "start", "media", "dtmf", "mark", "stop"}
    )
)
def test_unknown_events_name_no_event(name: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_event(frame({"event": name}))
    assert info.value.event == ""
