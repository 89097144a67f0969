"""The voice webhook's TwiML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from django.test import Client

from calls.models import Greeting
from calls.speech import speech_key

pytestmark = pytest.mark.django_db


def twiml(response) -> ET.Element:  # noqa: ANN001
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    return ET.fromstring(response.content)


def test_default_install_says_notice_then_streams(client: Client) -> None:
    root = twiml(client.post("/voice", {"CallSid": "CA1", "From": "+1555", "To": "+1666"}))
    assert [child.tag for child in root] == ["Say", "Connect"]
    assert root.find("Say").text == "This call may be monitored or recorded."
    stream = root.find("Connect/Stream")
    assert stream.get("url") == "ws://testserver/twilio"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    greeting = Greeting.objects.get(is_default=True)
    assert params["greeting"] == str(greeting.pk)
    assert params["speech"] == speech_key("aura-asteria-en", "Hello, how are you today?")
    assert params["from"] == "+1555"
    assert params["to"] == "+1666"


def test_get_works_too(client: Client) -> None:
    assert twiml(client.get("/voice")).find("Connect/Stream") is not None


def test_public_url_gives_wss_stream(client: Client, settings) -> None:  # noqa: ANN001
    settings.PUBLIC_URL = "https://abc.ngrok.app"
    stream = twiml(client.post("/voice")).find("Connect/Stream")
    assert stream.get("url") == "wss://abc.ngrok.app/twilio"
    assert "?" not in stream.get("url")


def test_https_request_gives_wss_when_proxy_is_trusted(client: Client, settings) -> None:  # noqa: ANN001
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True
    settings.ALLOWED_HOSTS = ["public.example"]
    response = client.post(
        "/voice", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="public.example"
    )
    assert twiml(response).find("Connect/Stream").get("url") == "wss://public.example/twilio"


def test_forwarded_headers_ignored_unless_trusted(client: Client) -> None:
    response = client.post(
        "/voice", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="evil.example"
    )
    assert twiml(response).find("Connect/Stream").get("url") == "ws://testserver/twilio"


def test_blank_say_text_means_no_say(client: Client) -> None:
    Greeting.objects.update(say_text="")
    root = twiml(client.post("/voice"))
    assert [child.tag for child in root] == ["Connect"]


def test_text_is_xml_escaped(client: Client) -> None:
    Greeting.objects.update(say_text='Tom & Jerry <say> "hi"')
    root = twiml(client.post("/voice", {"From": '"<&>'}))
    assert root.find("Say").text == 'Tom & Jerry <say> "hi"'
    params = {p.get("name"): p.get("value") for p in root.findall("Connect/Stream/Parameter")}
    assert params["from"] == '"<&>'


def test_put_is_refused(client: Client) -> None:
    assert client.put("/voice").status_code == 405
