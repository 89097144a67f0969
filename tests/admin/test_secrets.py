"""The admin refuses empty greetings and never shows secrets."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from calls.models import Greeting

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_admin_refuses_a_greeting_with_empty_text(client: Client, text: str) -> None:
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw-12345678"))
    response = client.post(
        "/admin/calls/greeting/add/",
        {"name": "Empty", "say_text": "", "text": text, "voice": "aura-asteria-en"},
    )
    assert response.status_code == 200  # the form again, with the error
    assert not Greeting.objects.filter(name="Empty").exists()
    assert "This field is required." in response.text or "Enter the words" in response.text


def test_admin_pages_never_show_secrets(client: Client, settings: Settings) -> None:
    settings.DEEPGRAM_API_KEY = "dg-secret-key-value"
    settings.TWILIO_AUTH_TOKEN = "twilio-secret-token-value"
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw-12345678"))
    for url in (
        "/admin/",
        "/admin/calls/greeting/",
        "/admin/calls/call/",
        "/admin/calls/greeting/1/change/",
    ):
        body = client.get(url).text
        assert "dg-secret-key-value" not in body and "twilio-secret-token-value" not in body
