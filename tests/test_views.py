"""The voice webhook's TwiML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest
from django.db import OperationalError, connection
from django.test import Client
from pytest_django.fixtures import Settings

from calls.models import Greeting, PhoneNumber
from calls.records.queries import FALLBACK_GREETING
from calls.records.remembered_greetings import remembered
from calls.speech.text import speech_key

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db


def twiml(response: TestResponse) -> ET.Element:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    return ET.fromstring(response.content)


def find(root: ET.Element, path: str) -> ET.Element:
    """The element at `path`, which the answer must have."""
    element = root.find(path)
    assert element is not None, path
    return element


def parameters(elements: Iterable[ET.Element]) -> dict[str, str]:
    """A <Stream>'s custom parameters by name."""
    return {p.attrib["name"]: p.attrib["value"] for p in elements}


def test_default_install_says_notice_then_streams(client: Client) -> None:
    root = twiml(client.post("/voice", {"CallSid": "CA1", "From": "+1555", "To": "+1666"}))
    assert [child.tag for child in root] == ["Say", "Connect"]
    assert find(root, "Say").text == FALLBACK_GREETING.say_text
    stream = find(root, "Connect/Stream")
    assert stream.get("url") == "ws://testserver/twilio"
    params = parameters(stream.findall("Parameter"))
    greeting = Greeting.objects.get(is_default=True)
    assert params["greeting"] == str(greeting.pk)
    assert params["speech"] == speech_key(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)
    assert params["from"] == "+1555"
    assert params["to"] == "+1666"


def test_get_works_too(client: Client) -> None:
    assert twiml(client.get("/voice")).find("Connect/Stream") is not None


def test_public_url_gives_wss_stream(client: Client, settings: Settings) -> None:
    settings.PUBLIC_URL = "https://abc.ngrok.app"
    stream = find(twiml(client.post("/voice")), "Connect/Stream")
    assert stream.get("url") == "wss://abc.ngrok.app/twilio"
    assert "?" not in stream.get("url", "")


def test_https_request_gives_wss_when_proxy_is_trusted(client: Client, settings: Settings) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True
    settings.ALLOWED_HOSTS = ["public.example"]
    response = client.post(
        "/voice", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="public.example"
    )
    assert find(twiml(response), "Connect/Stream").get("url") == "wss://public.example/twilio"


def test_forwarded_headers_ignored_unless_trusted(client: Client) -> None:
    response = client.post(
        "/voice", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="evil.example"
    )
    assert find(twiml(response), "Connect/Stream").get("url") == "ws://testserver/twilio"


def test_blank_say_text_means_no_say(client: Client) -> None:
    Greeting.objects.update(say_text="")
    root = twiml(client.post("/voice"))
    assert [child.tag for child in root] == ["Connect"]


def test_text_is_xml_escaped(client: Client) -> None:
    Greeting.objects.update(say_text='Tom & Jerry <say> "hi"')
    root = twiml(client.post("/voice", {"From": '"<&>'}))
    assert find(root, "Say").text == 'Tom & Jerry <say> "hi"'
    params = parameters(root.findall("Connect/Stream/Parameter"))
    assert params["from"] == '"<&>'


def test_put_is_refused(client: Client) -> None:
    assert client.put("/voice").status_code == 405


@contextmanager
def database_down() -> Iterator[None]:
    """Make every query on this thread fail as it does while PostgreSQL is stopped."""

    def refuse(*args: object) -> None:
        raise OperationalError("connection failed: Connection refused\nIs the server running?")

    with connection.execute_wrapper(refuse):
        yield


@pytest.fixture
def fresh_process() -> Iterator[None]:
    """No greeting read yet, as in a worker that has just started."""
    remembered.forget()
    yield
    remembered.forget()


def answer(client: Client, to: str) -> tuple[str | None, dict[str, str]]:
    root = twiml(client.post("/voice", {"CallSid": "CA1", "To": to}))
    assert root.find("Connect/Stream") is not None
    say = root.find("Say")
    params = parameters(root.findall("Connect/Stream/Parameter"))
    return (say.text if say is not None else None), params


@pytest.fixture
def sales() -> Greeting:
    greeting = Greeting.objects.create(
        name="Sales", text="Sales, hello.", say_text="Sales line.", voice="aura-2-thalia-en"
    )
    PhoneNumber.objects.create(number="+15550100001", greeting=greeting)
    return greeting


def test_when_the_database_fails_the_greeting_last_answered_for_the_number_is_used(
    client: Client, fresh_process: None, sales: Greeting, caplog: pytest.LogCaptureFixture
) -> None:
    before = answer(client, "+15550100001")
    with database_down():
        during = answer(client, "+15550100001")
    assert during[0] == before[0] == "Sales line."
    params = during[1]
    assert params["greeting"] == str(sales.pk)
    assert params["speech"] == speech_key("aura-2-thalia-en", "Sales, hello.")
    [line] = [r.getMessage() for r in caplog.records if "look-up failed" in r.getMessage()]
    assert "CA1" in line and "Connection refused" in line


def test_a_number_not_answered_before_gets_the_default_greeting_last_read(
    client: Client, fresh_process: None, sales: Greeting
) -> None:
    Greeting.objects.filter(is_default=True).update(say_text="Default line.")
    answer(client, "+15550100001")
    answer(client, "+15550100002")
    with database_down():
        say, params = answer(client, "+15550100003")
    assert say == "Default line."
    assert params["greeting"] == str(Greeting.objects.get(is_default=True).pk)


def test_with_nothing_read_yet_the_built_in_greeting_is_used(
    client: Client, fresh_process: None
) -> None:
    with database_down():
        say, params = answer(client, "+15550100001")
    assert say == FALLBACK_GREETING.say_text
    assert params["greeting"] == ""
    assert params["speech"] == speech_key(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)
