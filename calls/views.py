"""Twilio's voice webhooks: answer a call with TwiML that opens the Media Stream, and end it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from calls import services
from calls.endpoints import public_origin, stream_url
from calls.models import Call
from calls.remembered_greetings import remembered
from calls.signatures import REFUSALS, TOKEN_PARAMETER, accepted, check_webhook, issue_stream_token
from calls.speech import remember
from calls.stale import sweep_once

logger = logging.getLogger(__name__)

View = Callable[[HttpRequest], HttpResponse]


def twilio_webhook(view: View) -> View:
    """Let a request through only when Twilio signed it (or unsigned traffic is allowed)."""

    @functools.wraps(view)
    def checked(request: HttpRequest) -> HttpResponse:
        verdict = check_webhook(request)
        if not accepted(verdict):
            data = request.POST if request.method == "POST" else request.GET
            logger.warning(
                "call %r: %s refused: %s",
                data.get("CallSid", "")[:64],
                request.path,
                REFUSALS[verdict],
            )
            return HttpResponseForbidden("Twilio signature required.", content_type="text/plain")
        return view(request)

    # Twilio posts no CSRF token; its signature is the check.
    return csrf_exempt(checked)


@twilio_webhook
@require_http_methods(["GET", "POST"])
def voice(request: HttpRequest) -> HttpResponse:
    """Answer an incoming call: an optional <Say>, then <Connect><Stream> to /twilio."""
    data = request.POST if request.method == "POST" else request.GET
    sweep_once()
    to = data.get("To", "")
    try:
        greeting = remembered.remember(to, services.greeting_for_number(to))
    except DatabaseError as exc:
        # Twilio waits 15 s and then plays its error: a copy from memory still greets the caller.
        greeting = remembered.recall(to)
        logger.warning(
            "call %s: greeting look-up failed (%s); answering with the copy in memory, greeting %s",
            data.get("CallSid", "")[:64],
            str(exc).strip().partition("\n")[0] or type(exc).__name__,
            greeting.pk or "built in",
        )
    parameters = [
        ("greeting", str(greeting.pk or "")),
        ("speech", remember(greeting.voice, greeting.text)),
        ("from", data.get("From", "")),
        ("to", data.get("To", "")),
    ]
    # Signs this call's Parameters, so a `start` Twilio did not send from this answer is refused.
    parameters.append(
        (TOKEN_PARAMETER, issue_stream_token(data.get("CallSid", ""), dict(parameters)))
    )
    origin = public_origin(request)
    context = {
        "say_text": greeting.say_text,
        "stream_url": stream_url(origin),
        "action_url": origin + reverse("calls:after-stream"),
        "parameters": parameters,
    }
    return render(request, "calls/voice.xml", context, content_type="text/xml")


@twilio_webhook
@require_http_methods(["POST"])
def after_stream(request: HttpRequest) -> HttpResponse:
    """When the stream ends: hang up, or <Say> the greeting if none of it could be played."""
    call_sid = request.POST.get("CallSid", "")
    call = services.call_get(call_sid=call_sid)
    say_text = ""
    if call is None or (call.status == Call.Status.FAILED and call.first_audio_ms is None):
        greeting = (call.greeting if call is not None else None) or services.greeting_default()
        say_text = greeting.text
        logger.warning("call %s: greeting not streamed; Twilio reads it with <Say>", call_sid)
    return render(
        request, "calls/after_stream.xml", {"say_text": say_text}, content_type="text/xml"
    )
