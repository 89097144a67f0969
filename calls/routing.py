"""WebSocket routes: Twilio's Media Stream connects here."""

from __future__ import annotations

from django.urls import re_path

from calls.twilio.consumer import MediaStreamConsumer

# Twilio may sign and request the Stream URL with or without a trailing slash.
websocket_urlpatterns = [
    re_path(r"^twilio/?$", MediaStreamConsumer.as_asgi()),
]
