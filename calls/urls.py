"""HTTP routes of the calls app."""

from __future__ import annotations

from django.urls import path

from calls import views

app_name = "calls"

urlpatterns = [
    path("voice", views.voice, name="voice"),
    path("voice/after-stream", views.after_stream, name="after-stream"),
]
