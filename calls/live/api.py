"""The live-call control API for other programs: POST /api/calls/<CallSid>/say|clear|hangup."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from calls.live import commands

logger = logging.getLogger(__name__)

Command = Callable[[HttpRequest, str], Awaitable[None]]
# A coroutine function, which Django's path() tells apart from a sync view.
View = Callable[[HttpRequest, str], Coroutine[Any, Any, JsonResponse]]

SAY_FIELDS = frozenset({"text", "voice", "interrupt"})


class BadRequest(Exception):
    """The request body is not a usable command."""


def _answer(code: int, **body: Any) -> JsonResponse:
    return JsonResponse(body, status=code)


def _refusal(request: HttpRequest) -> JsonResponse | None:
    """Check the bearer token; return the answer refusing the request, or None."""
    token = settings.VOICEBRIDGE_API_TOKEN
    if not token:
        return _answer(403, error="the call control API is off (VOICEBRIDGE_API_TOKEN is not set)")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        response = _answer(401, error="send Authorization: Bearer <VOICEBRIDGE_API_TOKEN>")
        response["WWW-Authenticate"] = 'Bearer realm="voicebridge"'
        return response
    if not secrets.compare_digest(given.strip().encode(), token.encode()):
        return _answer(403, error="wrong API token")
    return None


def command(name: str) -> Callable[[Command], View]:
    """Wrap a command: POST only, bearer token, errors translated to JSON answers."""

    def decorate(run: Command) -> View:
        @csrf_exempt  # Other programs hold a token, not a session: there is no CSRF to forge.
        @wraps(run)
        async def view(request: HttpRequest, call_sid: str) -> JsonResponse:
            if request.method != "POST":
                response = _answer(405, error="use POST")
                response["Allow"] = "POST"
                return response
            refusal = _refusal(request)
            if refusal is not None:
                return refusal
            try:
                await run(request, call_sid)
            except (BadRequest, commands.InvalidCommand) as exc:
                return _answer(400, error=str(exc))
            except commands.CallNotLive as exc:
                return _answer(404, error=str(exc))
            except commands.CallEnded as exc:
                return _answer(409, error=str(exc))
            except commands.TooMuchQueued as exc:
                return _answer(429, error=str(exc))
            except commands.ControlUnavailable as exc:
                response = _answer(503, error=str(exc))
                response["Retry-After"] = "1"
                return response
            logger.info("call %s: %s accepted from the control API", call_sid, name)
            return _answer(202, call_sid=call_sid, command=name, status="accepted")

        return view

    return decorate


def _json_object(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object, e.g. {"text": "Your table is ready."}')
    unknown = sorted(set(body) - SAY_FIELDS)
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)}")
    if "text" not in body:
        raise BadRequest("text is required")
    return body


@command("say")
async def say(request: HttpRequest, call_sid: str) -> None:
    """Speak {"text", "voice"?, "interrupt"?} to the caller."""
    body = _json_object(request)
    await commands.asay(
        call_sid, body["text"], body.get("voice"), interrupt=body.get("interrupt", False)
    )


@command("clear")
async def clear(request: HttpRequest, call_sid: str) -> None:
    """Stop the speech playing now."""
    await commands.aclear(call_sid)


@command("hangup")
async def hangup(request: HttpRequest, call_sid: str) -> None:
    """End the call after the queued speech."""
    await commands.ahangup(call_sid)
