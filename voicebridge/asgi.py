"""ASGI entry point: `daphne voicebridge.asgi:application` serves HTTP and the Twilio WebSocket."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voicebridge.settings")

# Populate the app registry before importing code that imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import reverse  # noqa: E402

from calls.routing import websocket_urlpatterns  # noqa: E402
from calls.server.startup import prepare_worker  # noqa: E402
from calls.server.webhook_http import WebhookHandler, route_webhooks  # noqa: E402

# No AllowedHostsOriginValidator: Twilio may send no Origin header; the signature is the gate.
application = ProtocolTypeRouter(
    {
        "http": route_webhooks(
            [reverse("calls:voice"), reverse("calls:after-stream")],
            WebhookHandler(),
            django_asgi_app,
        ),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

prepare_worker()
