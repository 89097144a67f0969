"""The page at `/`: says what is running here and where to go next."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from calls.twilio.security import public_origin


@require_GET
def page(request: HttpRequest) -> HttpResponse:
    """A short page for people who open the server's address in a browser."""
    context = {
        "voice_url": public_origin(request) + reverse("calls:voice"),
        "deepgram_ready": bool(settings.DEEPGRAM_API_KEY),
        "twilio_checked": bool(settings.TWILIO_AUTH_TOKEN),
    }
    return render(request, "calls/home.html", context)
