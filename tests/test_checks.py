"""System checks."""

from __future__ import annotations

from pytest_django.fixtures import Settings

from calls.checks import deepgram_key_check


def test_missing_deepgram_key_warns(settings: Settings) -> None:
    settings.DEEPGRAM_API_KEY = ""
    assert [w.id for w in deepgram_key_check(None)] == ["calls.W001"]


def test_configured_key_is_quiet(settings: Settings) -> None:
    settings.DEEPGRAM_API_KEY = "set"
    assert deepgram_key_check(None) == []
