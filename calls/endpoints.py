"""The public URLs Twilio uses to reach us, built from PUBLIC_URL or the request."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

STREAM_PATH = "/twilio"


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
