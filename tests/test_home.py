"""The page at `/`: what is running, where the admin is, and what is missing."""

from __future__ import annotations

from django.test import Client
from pytest_django.fixtures import Settings


def test_the_home_page_points_at_the_admin_and_the_webhook(
    client: Client, settings: Settings
) -> None:
    settings.TWILIO_AUTH_TOKEN = ""
    page = client.get("/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "voicebridge is running" in text
    assert 'href="/admin/"' in text
    assert "http://testserver/voice" in text
    assert "TWILIO_AUTH_TOKEN" in text


def test_a_configured_server_shows_no_warnings(client: Client, settings: Settings) -> None:
    settings.TWILIO_AUTH_TOKEN = "token"
    settings.DEEPGRAM_API_KEY = "key"
    text = client.get("/").content.decode()
    assert "TWILIO_AUTH_TOKEN" not in text and "DEEPGRAM_API_KEY" not in text
