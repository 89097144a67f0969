"""ASGI entry point: `daphne voicebridge.asgi:application` serves HTTP and the Twilio WebSocket."""

from __future__ import annotations

import gc
import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voicebridge.settings")

# Populate the app registry before importing code that imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from calls.routing import websocket_urlpatterns  # noqa: E402
from calls.server import bounded_http  # noqa: E402
from calls.server.malloc import cap_arenas  # noqa: E402
from calls.speech import deepgram_io  # noqa: E402
from calls.twilio.security import announce_policy  # noqa: E402

# No AllowedHostsOriginValidator: Twilio may send no Origin header; the signature is the gate.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

announce_policy()

# Request bodies and slow requests are bounded where daphne reads them, before Django sees them.
bounded_http.install()

# Before the first thread but the main one starts.
cap_arenas(settings.MALLOC_ARENA_MAX)

# Without this the first uncached call after a start waited about 70 ms more than the next.
deepgram_io.prepare()

# What start-up loaded lives as long as the process: frozen, the garbage collector's full passes
# skip it. Every call on the worker waits out such a pass; with 200 calls open one took 37-86 ms
# before this and 15-31 ms after.
gc.freeze()
