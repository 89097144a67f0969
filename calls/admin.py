"""Admin pages: greetings are edited here; calls are a read-only log."""

from __future__ import annotations

from django.contrib import admin, messages
from django.forms import ModelForm
from django.http import HttpRequest

from calls.models import Call, Greeting
from calls.speech import render_ahead
from calls.tts import TTSError


@admin.register(Greeting)
class GreetingAdmin(admin.ModelAdmin):
    list_display = ("name", "voice", "is_default", "updated_at")
    list_filter = ("voice", "is_default")
    search_fields = ("name", "text", "say_text")
    fields = ("name", "say_text", "text", "voice", "is_default")

    def save_model(
        self, request: HttpRequest, obj: Greeting, form: ModelForm, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        # Rendered now, the greeting is cached before any caller hears it, even the first.
        try:
            render_ahead(obj.voice, obj.text)
        except TTSError as exc:
            self.message_user(
                request,
                f"The greeting was saved, but Deepgram could not render it yet ({exc}); "
                "the first caller will wait for Deepgram instead.",
                messages.WARNING,
            )


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
