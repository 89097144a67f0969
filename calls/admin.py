"""Admin pages: greetings are edited here; calls are a read-only log."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from calls.models import Call, Greeting


@admin.register(Greeting)
class GreetingAdmin(admin.ModelAdmin):
    list_display = ("name", "voice", "is_default", "updated_at")
    list_filter = ("voice", "is_default")
    search_fields = ("name", "text", "say_text")
    fields = ("name", "say_text", "text", "voice", "is_default")


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = (
        "started_at",
        "call_sid",
        "from_number",
        "to_number",
        "greeting",
        "status",
        "duration",
        "first_audio_ms",
        "from_cache",
        "interrupted",
        "playback_confirmed",
    )
    list_filter = ("status", "greeting", "to_number")
    search_fields = ("call_sid", "stream_sid", "from_number", "to_number")
    date_hierarchy = "started_at"
    list_select_related = ("greeting",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False
