"""Twilio's voice webhooks: answer a call with TwiML that opens the Media Stream, and end it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from calls.models import Call, Greeting
from calls.records import queries
from calls.records.remembered_greetings import GreetingCopy, remembered
from calls.records.stale import sweep_once
from calls.speech.synthesis import remember
from calls.twilio import next_step
from calls.twilio.security import (
    REFUSALS,
    TOKEN_PARAMETER,
    accepted,
    check_webhook,
    issue_stream_token,
    public_origin,
    stream_url,
)

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
        greeting = remembered.remember(to, queries.greeting_for_number(to))
    except DatabaseError as exc:
        # Twilio waits 15 s and then plays its error: a copy from memory still greets the caller.
        greeting = remembered.recall(to)
        logger.warning(
            "call %s: greeting look-up failed (%s); answering with the copy in memory, greeting %s",
            data.get("CallSid", "")[:64],
            str(exc).strip().partition("\n")[0] or type(exc).__name__,
            greeting.pk or "built in",
        )
    return _stream_answer(request, data, greeting, say_text=greeting.say_text, resumes=0)


@twilio_webhook
@require_http_methods(["POST"])
def after_stream(request: HttpRequest) -> HttpResponse:
    """When a stream ends: hang up, <Say> the greeting if none of it played, or start the
    stream again on a live worker when it ended while the call went on."""
    data = request.POST
    call_sid = data.get("CallSid", "")
    if data.get("CallStatus", "") in ENDED_CALL_STATUSES:
        return _end(request)
    step = next_step.read(call_sid)
    if step == "hangup":
        return _end(request)
    try:
        call = queries.call_get(call_sid=call_sid)
    except DatabaseError as exc:
        logger.warning("call %s: its record could not be read: %s", call_sid, exc)
        call = None
    unheard = call is not None and call.status == Call.Status.FAILED and call.first_audio_ms is None
    if step == "say" or (step is None and unheard):
        return _say_greeting(request, call_sid, call)
    if step is None and call is not None and call.status != Call.Status.IN_PROGRESS:
        return _end(request)
    # The stream ended while the call went on: its worker stopped or died.
    resumes = _count(request.GET.get("resumes", ""))
    if resumes >= settings.MAX_STREAM_RESUMES:
        logger.warning("call %s: stream ended %d times; giving up", call_sid, resumes + 1)
        return _say_greeting(request, call_sid, call) if call is None else _end(request)
    greeting = (call.greeting if call is not None else None) or _named_greeting(request)
    logger.warning("call %s: stream ended mid-call; starting it again", call_sid)
    return _stream_answer(request, data, greeting, say_text="", resumes=resumes + 1)


# Twilio's CallStatus values for a call that is over: nothing more will be played.
ENDED_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


def _stream_answer(
    request: HttpRequest,
    data: QueryDict,
    greeting: Greeting | GreetingCopy,
    *,
    say_text: str,
    resumes: int,
) -> HttpResponse:
    """TwiML that opens a Media Stream speaking `greeting`, after an optional <Say>."""
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
    action = {"greeting": greeting.pk or ""} | ({"resumes": resumes} if resumes else {})
    context = {
        "say_text": say_text,
        "stream_url": stream_url(origin),
        "action_url": f"{origin}{reverse('calls:after-stream')}?{urlencode(action)}",
        "parameters": parameters,
    }
    return render(request, "calls/voice.xml", context, content_type="text/xml")


def _say_greeting(request: HttpRequest, call_sid: str, call: Call | None) -> HttpResponse:
    greeting = (call.greeting if call is not None else None) or _named_greeting(request)
    logger.warning("call %s: greeting not streamed; Twilio reads it with <Say>", call_sid)
    return _end(request, say_text=greeting.text)


def _end(request: HttpRequest, *, say_text: str = "") -> HttpResponse:
    return render(
        request, "calls/after_stream.xml", {"say_text": say_text}, content_type="text/xml"
    )


def _named_greeting(request: HttpRequest) -> Greeting:
    """The greeting the action URL names, else the default one."""
    try:
        named = _count(request.GET.get("greeting", "")) or None
        return queries.greeting_get(greeting_id=named) or queries.greeting_default()
    except DatabaseError:
        return queries.FALLBACK_GREETING


def _count(value: str) -> int:
    return int(value) if value.isdigit() and len(value) < 6 else 0
