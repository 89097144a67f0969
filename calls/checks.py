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
