"""What Twilio does once the stream ends: <Say> the greeting if none of it played, else hang up."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from calls.models import Call, Greeting
from calls.records.queries import FALLBACK_GREETING

pytestmark = pytest.mark.django_db


def verbs(client: Client, call_sid: str) -> list[tuple[str, str | None]]:
    response = client.post("/voice/after-stream", {"CallSid": call_sid})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    return [(verb.tag, verb.text) for verb in ET.fromstring(response.content)]


def make_call(**fields: object) -> Call:
    defaults = {"call_sid": "CA1", "started_at": timezone.now(), "greeting": None}
    return Call.objects.create(**{**defaults, **fields})


def test_greeting_that_failed_before_any_audio_is_said_by_twilio(client: Client) -> None:
    greeting = Greeting.objects.create(
        name="Bakery", text="Fresh bread & <cake>.", voice="aura-2-thalia-en"
    )
    make_call(greeting=greeting, status=Call.Status.FAILED, error="Deepgram answered 401")
    assert verbs(client, "CA1") == [("Say", "Fresh bread & <cake>."), ("Hangup", None)]


@pytest.mark.parametrize(
    ("status", "first_audio_ms"),
    [
        (Call.Status.COMPLETED, 120.0),
        (Call.Status.INTERRUPTED, 90.0),
        (Call.Status.FAILED, 150.0),  # some audio played: saying it again would repeat words
    ],
)
def test_greeting_that_played_ends_the_call(
    client: Client, status: Call.Status, first_audio_ms: float
) -> None:
    make_call(status=status, first_audio_ms=first_audio_ms)
    assert verbs(client, "CA1") == [("Hangup", None)]


def stream(client: Client, call_sid: str, query: str = "") -> ET.Element | None:
    response = client.post(f"/voice/after-stream{query}", {"CallSid": call_sid, "To": "+1666"})
    assert response.status_code == 200
    return ET.fromstring(response.content).find("Connect")


def test_stream_that_ended_mid_call_is_started_again(client: Client) -> None:
    greeting = Greeting.objects.create(name="Bakery", text="Fresh bread.", voice="aura-2-thalia-en")
    make_call(greeting=greeting)
    connect = stream(client, "CA1")
    assert connect is not None
    params = {p.get("name"): p.get("value") for p in connect.findall("Stream/Parameter")}
    assert params["greeting"] == str(greeting.pk)
    assert params["to"] == "+1666"
    assert params["token"]
    assert connect.get("action", "").endswith(
        f"/voice/after-stream?greeting={greeting.pk}&resumes=1"
    )


def test_a_call_with_no_record_yet_is_started_again(client: Client) -> None:
    # Its worker died before writing the row.
    assert stream(client, "CA-unknown", "?greeting=") is not None


def test_streams_are_started_again_a_bounded_number_of_times(
    client: Client, settings: Settings
) -> None:
    settings.MAX_STREAM_RESUMES = 2
    make_call()
    assert stream(client, "CA1", "?resumes=1") is not None
    exhausted = client.post("/voice/after-stream?resumes=2", {"CallSid": "CA1"})
    assert [verb.tag for verb in ET.fromstring(exhausted.content)] == ["Hangup"]


def test_a_stream_that_never_started_ends_with_the_default_greeting_said(
    client: Client,
    settings: Settings,
) -> None:
    settings.MAX_STREAM_RESUMES = 0
    assert verbs(client, "CA-unknown") == [("Say", FALLBACK_GREETING.text), ("Hangup", None)]


@pytest.mark.parametrize("status", ["completed", "canceled", "failed"])
def test_a_call_twilio_says_is_over_is_hung_up(client: Client, status: str) -> None:
    make_call()
    response = client.post("/voice/after-stream", {"CallSid": "CA1", "CallStatus": status})
    assert [verb.tag for verb in ET.fromstring(response.content)] == ["Hangup"]


def test_voice_answer_points_connect_at_the_after_stream_webhook(client: Client) -> None:
    response = client.post("/voice", {"CallSid": "CA1"})
    connect = ET.fromstring(response.content).find("Connect")
    assert connect is not None
    assert connect.get("action", "").startswith("http://testserver/voice/after-stream?greeting=")


def test_get_is_refused(client: Client) -> None:
    assert client.get("/voice/after-stream").status_code == 405
