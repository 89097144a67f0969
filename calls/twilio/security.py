"""Who may talk to us as Twilio: signatures, the per-call stream token and our public URLs."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpRequest
from twilio.request_validator import RequestValidator

from calls.server.cache_calls import CacheUnavailable, cache_call, runs_inline

logger = logging.getLogger(__name__)

STREAM_PATH = "/twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
TOKEN_PARAMETER = "token"
# Twilio reads the <Say> (at most 500 characters, about 40 s) before it opens the stream.
STREAM_TOKEN_MAX_AGE = 120
_TOKEN_SALT = "calls.stream-token"
TOKEN_USED = "stream token was already used"

Verdict = Literal["signed", "unsigned", "no-token", "bad-signature"]

# Why a refused request was refused, for the one log line it gets.
REFUSALS: dict[str, str] = {
    "no-token": "TWILIO_AUTH_TOKEN is not set and DEBUG is off, so no Twilio traffic is accepted",
    "bad-signature": f"missing or invalid {SIGNATURE_HEADER}",
}


# Tokens claimed while the shared cache was unreachable.
_claimed_here = LocMemCache("calls.stream-tokens", {"OPTIONS": {"MAX_ENTRIES": 100_000}})


def public_origin(request: HttpRequest) -> str:
    """Return the origin Twilio called, e.g. `https://abc.ngrok.app`."""
    if settings.PUBLIC_URL:
        parts = urlsplit(settings.PUBLIC_URL)
        return f"{parts.scheme}://{parts.netloc}"
    # get_host() and is_secure() honour X-Forwarded-* only when settings say to trust them.
    scheme = "https" if request.is_secure() else "http"
    return f"{scheme}://{request.get_host()}"


def stream_url(origin: str) -> str:
    """Return the WebSocket URL for the Media Stream: wss:// for https, ws:// for local http."""
    scheme, _, rest = origin.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{STREAM_PATH}"


class StreamTokenError(Exception):
    """A `start` whose stream token is missing, forged, expired or already used."""


def accepted(verdict: Verdict) -> bool:
    """Whether a request with this verdict may go on."""
    return verdict in ("signed", "unsigned")


def policy() -> Literal["verify", "allow", "refuse"]:
    """Say what to do with Twilio traffic: verify signatures, allow it unsigned, or refuse it."""
    if settings.TWILIO_AUTH_TOKEN:
        return "verify"
    return "allow" if settings.TWILIO_ALLOW_UNSIGNED else "refuse"


def announce_policy() -> None:
    """Say at start-up when Twilio traffic goes unchecked or is refused for want of a token."""
    mode = policy()
    if mode == "allow":
        logger.warning(
            "TWILIO_AUTH_TOKEN is not set: accepting unsigned Twilio requests (DEBUG is on). "
            "Set it before exposing this server."
        )
    elif mode == "refuse":
        logger.error("Refusing all Twilio traffic: %s.", REFUSALS["no-token"])


def check_webhook(request: HttpRequest) -> Verdict:
    """Check a Twilio webhook's signature over the public URL and its POST parameters."""
    mode = policy()
    if mode != "verify":
        return "unsigned" if mode == "allow" else "no-token"
    # The URL Twilio signed is the public one: behind a proxy we see another scheme and host.
    url = public_origin(request) + request.get_full_path()
    params: Any = request.POST if request.method == "POST" else {}
    signature = request.headers.get(SIGNATURE_HEADER, "")
    valid = _validator().validate(url, params, signature)
    return "signed" if valid else "bad-signature"


def check_handshake(scope: Mapping[str, Any]) -> Verdict:
    """Check the WebSocket handshake's signature over the wss:// Stream URL, with no parameters."""
    mode = policy()
    if mode != "verify":
        return "unsigned" if mode == "allow" else "no-token"
    headers = dict(scope.get("headers") or [])
    signature = headers.get(SIGNATURE_HEADER.lower().encode(), b"").decode("latin-1")
    validator = _validator()
    for url in _handshake_urls(scope, headers):
        # Params must be a dict: a string without bodySHA256 crashes the validator (#885).
        if validator.validate(url, {}, signature):
            return "signed"
    return "bad-signature"


def issue_stream_token(call_sid: str, parameters: Mapping[str, str]) -> str:
    """Return a signed, short-lived token binding this CallSid to the stream's other Parameters."""
    # The nonce makes every answer's token distinct, even twice in one second for one call.
    value = f"{secrets.token_urlsafe(9)}.{_digest(call_sid, parameters)}"
    return signing.TimestampSigner(salt=_TOKEN_SALT).sign(value)


def check_stream_token(call_sid: str, parameters: Mapping[str, str]) -> str:
    """Check that a `start` carries a genuine, fresh token for its CallSid and Parameters.

    Returns the key that `claim_stream_token` uses up, so that the token works only once.
    """
    token = parameters.get(TOKEN_PARAMETER, "")
    if not token:
        raise StreamTokenError("start carries no stream token")
    others = {k: v for k, v in parameters.items() if k != TOKEN_PARAMETER}
    try:
        value = signing.TimestampSigner(salt=_TOKEN_SALT).unsign(
            token, max_age=STREAM_TOKEN_MAX_AGE
        )
    except signing.SignatureExpired:
        raise StreamTokenError("stream token expired") from None
    except signing.BadSignature:
        raise StreamTokenError("stream token is forged") from None
    if value.partition(".")[2] != _digest(call_sid, others):
        raise StreamTokenError("stream token was issued for another call or other parameters")
    return f"calls:stream-token:{token}"


async def claim_stream_token(key: str) -> None:
    """Use a checked token up; a second `start` with it is a replay."""
    # One use across every worker: the shared cache (Redis when REDIS_URL is set) decides.
    try:
        unused = await cache_call("default", "add", key, 1, STREAM_TOKEN_MAX_AGE)
    except CacheUnavailable:
        # New calls are still answered while Redis is down: a replay to this worker is
        # still refused, one to another worker is not until Redis returns.
        unused = _claimed_here.add(key, 1, STREAM_TOKEN_MAX_AGE)
    else:
        # Claimed here while Redis was down: used, whatever Redis remembers now.
        unused = unused and key not in _claimed_here
    if not unused:
        raise StreamTokenError(TOKEN_USED)


def claim_stream_token_now(key: str) -> bool | None:
    """Use a checked token up with no await if the shared cache allows: whether it was unused.

    None when the claim needs I/O (Redis); `claim_stream_token` makes it then.
    """
    if not runs_inline("default", "add"):
        return None
    return bool(caches["default"].add(key, 1, STREAM_TOKEN_MAX_AGE))


def _validator() -> RequestValidator:
    return RequestValidator(settings.TWILIO_AUTH_TOKEN)


def _handshake_urls(scope: Mapping[str, Any], headers: Mapping[bytes, bytes]) -> list[str]:
    path = scope.get("path", "")
    if settings.PUBLIC_URL:
        parts = urlsplit(settings.PUBLIC_URL)
        secure = parts.scheme == "https"
        origins = [f"{'wss' if secure else 'ws'}://{parts.netloc}"]
    else:
        # No configured address: the Stream URL was built from the webhook's Host, so is this.
        host = headers.get(b"host", b"").decode("latin-1")
        origins = [f"wss://{host}", f"ws://{host}"]
    base = [origin + path.rstrip("/") for origin in origins]
    # Twilio's documentation: some handshakes are signed with a trailing slash.
    return [url for plain in base for url in (plain, plain + "/")]


def _digest(call_sid: str, parameters: Mapping[str, str]) -> str:
    text = "\0".join([call_sid, *(f"{k}={v}" for k, v in sorted(parameters.items()))])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
