"""System checks for a voicebridge deployment."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register


@register()
def deepgram_key_check(app_configs: Any, **kwargs: Any) -> list[Warning]:
    """Warn when no Deepgram key is configured: every call would fail to speak."""
    if settings.DEEPGRAM_API_KEY:
        return []
    return [
        Warning(
            "DEEPGRAM_API_KEY is not set, so calls cannot be answered with Aura speech.",
            hint="Set DEEPGRAM_API_KEY in the environment (see .env.example).",
            id="calls.W001",
        )
    ]


@register(deploy=True)
def twilio_signature_check(app_configs: Any, **kwargs: Any) -> list[Warning]:
    """Explain why Twilio traffic would be refused, or checked against a guessed address."""
    if not settings.TWILIO_AUTH_TOKEN:
        return [
            Warning(
                "TWILIO_AUTH_TOKEN is not set, so X-Twilio-Signature cannot be checked: with "
                "DEBUG off every Twilio webhook and Media Stream is refused (HTTP 403).",
                hint="Set TWILIO_AUTH_TOKEN to the Twilio account's auth token.",
                id="calls.W002",
            )
        ]
    if not settings.PUBLIC_URL:
        return [
            Warning(
                "PUBLIC_URL is not set, so signatures are checked against the URL built from "
                "the Host header; behind a proxy or tunnel that is not the URL Twilio signed.",
                hint="Set PUBLIC_URL to the https:// address Twilio calls, e.g. "
                "https://voice.example.com.",
                id="calls.W003",
            )
        ]
    return []
