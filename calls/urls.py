"""HTTP routes of the calls app."""

from __future__ import annotations

from django.urls import path

from calls import health, home, views
from calls.live import api

app_name = "calls"

urlpatterns = [
    path("", home.page, name="home"),
    path("voice", views.voice, name="voice"),
    path("voice/after-stream", views.after_stream, name="after-stream"),
    path("api/calls/<str:call_sid>/say", api.say, name="api-say"),
    path("api/calls/<str:call_sid>/clear", api.clear, name="api-clear"),
    path("api/calls/<str:call_sid>/hangup", api.hangup, name="api-hangup"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
