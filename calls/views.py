"""Twilio's voice webhook: answers a call with TwiML that opens the Media Stream."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from calls import services
from calls.endpoints import public_origin, stream_url
from calls.speech import speech_key


@csrf_exempt  # Twilio posts no CSRF token; its signature is the check.
@require_http_methods(["GET", "POST"])
def voice(request: HttpRequest) -> HttpResponse:
    """Answer an incoming call: an optional <Say>, then <Connect><Stream> to /twilio."""
    data = request.POST if request.method == "POST" else request.GET
    greeting = services.greeting_for_number(data.get("To", ""))
    parameters = [
        ("greeting", str(greeting.pk or "")),
        ("speech", speech_key(greeting.voice, greeting.text)),
        ("from", data.get("From", "")),
        ("to", data.get("To", "")),
    ]
    context = {
        "say_text": greeting.say_text,
        "stream_url": stream_url(public_origin(request)),
        "parameters": parameters,
    }
    return render(request, "calls/voice.xml", context, content_type="text/xml")
