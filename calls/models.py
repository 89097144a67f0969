"""Greetings callers hear, and one record per call."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from calls.speech.voices import DEFAULT_VOICE, VOICE_CHOICES


def validate_spoken_text(value: str) -> None:
    """Refuse text with nothing to speak."""
    if not value.strip():
        raise ValidationError("Enter the words the caller should hear.")


class Greeting(models.Model):
    name = models.CharField(max_length=100, unique=True)
    text = models.TextField(
        validators=[validate_spoken_text],
        help_text="The words Deepgram Aura speaks to the caller.",
    )
    voice = models.CharField(max_length=64, choices=VOICE_CHOICES, default=DEFAULT_VOICE)
    say_text = models.CharField(
        "Twilio <Say> text",
        max_length=500,
        blank=True,
        help_text="Read by Twilio before the greeting (for example a recording notice). "
        "Leave blank for none.",
    )
    is_default = models.BooleanField(
        "default greeting",
        default=False,
        help_text="Used for calls that name no other greeting. Only one greeting is the default.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="calls_greeting_one_default",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.is_default:
            # Marking this one the default takes the mark from any other.
            Greeting.objects.filter(is_default=True).exclude(pk=self.pk).update(is_default=False)
        super().save(*args, **kwargs)


# Twilio sends `To` in E.164: a plus, a country code, at most 15 digits in all.
validate_e164 = RegexValidator(
    r"^\+[1-9]\d{1,14}$",
    "Enter the number in E.164 form, as Twilio sends it: a plus, the country code, then "
    "the digits, for example +15550100000.",
)
_NUMBER_PUNCTUATION = re.compile(r"[\s().\-]")


def normalize_number(value: str) -> str:
    """Drop the spaces, dots, dashes and brackets people type inside phone numbers."""
    return _NUMBER_PUNCTUATION.sub("", value)


class PhoneNumber(models.Model):
    number = models.CharField(
        # Room for the spaces and dashes people type; what is stored is plain E.164.
        max_length=32,
        unique=True,
        validators=[validate_e164],
        help_text="A Twilio number callers dial (the webhook's To), for example +15550100000.",
    )
    greeting = models.ForeignKey(
        Greeting,
        on_delete=models.CASCADE,
        related_name="numbers",
        help_text="What callers to this number hear.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["number"]
        verbose_name = "called number"

    def __str__(self) -> str:
        return self.number

    def clean_fields(self, exclude: Collection[str] | None = None) -> None:
        self.number = normalize_number(self.number or "")
        super().clean_fields(exclude)


class Call(models.Model):
    class Status(models.TextChoices):
        IN_PROGRESS = "in-progress", "In progress"
        COMPLETED = "completed", "Completed"
        INTERRUPTED = "interrupted", "Interrupted"
        FAILED = "failed", "Failed"

    call_sid = models.CharField("CallSid", max_length=64, unique=True)
    stream_sid = models.CharField(
        "StreamSid", max_length=64, blank=True, help_text="The call's latest media stream."
    )
    streams = models.PositiveSmallIntegerField(
        default=1,
        help_text="How many media streams the call has had: a stream resumed on another "
        "server after its server stopped counts again.",
    )
    from_number = models.CharField("from", max_length=64, blank=True)
    to_number = models.CharField("to", max_length=64, blank=True)
    greeting = models.ForeignKey(
        Greeting, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    first_audio_ms = models.FloatField(
        "time to first audio (ms)",
        null=True,
        blank=True,
        help_text="From the stream's start to the first audio sent to Twilio.",
    )
    from_cache = models.BooleanField("served from cache", null=True, blank=True)
    interrupted = models.BooleanField("caller interrupted", default=False)
    playback_confirmed = models.BooleanField(
        "playback confirmed",
        default=False,
        help_text="Twilio echoed the mark sent after the greeting.",
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["status", "started_at"])]
        permissions = [("control_call", "Can speak to, silence and hang up live calls")]

    def __str__(self) -> str:
        return self.call_sid

    @property
    def duration(self) -> timedelta | None:
        """How long the stream lasted, once it has ended."""
        if self.ended_at is None:
            return None
        return self.ended_at - self.started_at


class CallUtterance(models.Model):
    """Something an application said into a live call through the control API or the admin."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="utterances")
    text = models.TextField()
    voice = models.CharField(max_length=64)
    interrupt = models.BooleanField(
        "interrupting", default=False, help_text="Cleared what was playing before speaking."
    )
    mark = models.CharField(max_length=32)
    played = models.BooleanField(
        "playback confirmed", default=False, help_text="Twilio echoed the mark sent after it."
    )
    requested_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["requested_at", "pk"]

    def __str__(self) -> str:
        return self.text[:60]
