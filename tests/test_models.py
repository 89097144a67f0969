"""Greeting and Call models."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from calls.models import Call, Greeting
from calls.records.queries import FALLBACK_GREETING

pytestmark = pytest.mark.django_db


def test_fresh_install_has_the_demo_greeting() -> None:
    greeting = Greeting.objects.get()
    assert greeting.is_default
    assert greeting.text == FALLBACK_GREETING.text
    assert greeting.voice == FALLBACK_GREETING.voice
    assert greeting.say_text == FALLBACK_GREETING.say_text


def test_marking_a_new_default_unmarks_the_old_one() -> None:
    new = Greeting.objects.create(name="Night", text="We are closed.", is_default=True)
    assert list(Greeting.objects.filter(is_default=True)) == [new]


def test_blank_text_is_refused() -> None:
    greeting = Greeting(name="Empty", text="   ", voice="aura-2-thalia-en")
    with pytest.raises(ValidationError) as info:
        greeting.full_clean()
    assert "text" in info.value.message_dict


def test_unknown_voice_is_refused() -> None:
    greeting = Greeting(name="Odd", text="Hi.", voice="aura-nobody-en")
    with pytest.raises(ValidationError) as info:
        greeting.full_clean()
    assert "voice" in info.value.message_dict


def test_call_duration_once_ended() -> None:
    started = timezone.now()
    call = Call(call_sid="CA1", started_at=started)
    assert call.duration is None
    call.ended_at = started + timedelta(seconds=42)
    assert call.duration == timedelta(seconds=42)
    assert str(call) == "CA1"


def test_a_new_call_has_had_one_stream() -> None:
    Call.objects.create(call_sid="CA1", started_at=timezone.now())
    assert Call.objects.get().streams == 1
