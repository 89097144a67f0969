"""Greetings are edited (and heard) here before any caller asks; numbers are routed to them."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.forms import ModelForm
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from calls.models import Greeting, PhoneNumber
from calls.records import queries
from calls.speech import preview
from calls.speech.deepgram import TTSError
from calls.speech.synthesis import render_ahead
from calls.speech.text import speech_key

logger = logging.getLogger(__name__)


def _render_saved(greeting: Greeting) -> preview.Rendering:
    """Render a greeting from a sync view: under daphne this runs on the server's event loop."""
    return async_to_sync(preview.render)(greeting.voice, greeting.text)


@admin.register(Greeting)
class GreetingAdmin(admin.ModelAdmin):
    list_display = ("name", "voice", "is_default", "updated_at")
    list_filter = ("voice", "is_default")
    search_fields = ("name", "text", "say_text")
    fields = ("name", "say_text", "text", "voice", "is_default", "player", "called_numbers")
    readonly_fields = ("player", "called_numbers")

    class Media:
        css = {"all": ("calls/listen.css",)}
        js = ("calls/listen.js",)

    def get_urls(self) -> list[URLPattern]:
        listen_url = path(
            "<path:object_id>/listen.wav",
            self.admin_site.admin_view(self.listen_view),
            name="calls_greeting_listen",
        )
        return [listen_url, *super().get_urls()]

    @admin.display(description="Listen")
    def player(self, obj: Greeting | None) -> SafeString | str:
        """The saved greeting as callers hear it: a player, its length, or why it cannot play."""
        saved = queries.greeting_get(greeting_id=obj.pk) if obj is not None else None
        if saved is None:
            return "Save the greeting to listen to it."
        try:
            rendering = _render_saved(saved)
        except TTSError as exc:
            logger.warning("greeting %s could not be rendered: %s", saved.pk, exc)
            return format_html(
                '<p class="errornote listen-error">{}</p>', preview.explain(exc, saved.voice)
            )
        # The text's hash in the URL: an edited greeting is never played from a stale copy.
        version = speech_key(saved.voice, saved.text)[-12:]
        url = reverse("admin:calls_greeting_listen", args=[saved.pk])
        return format_html(
            '<div class="listen"><div class="listen-player">'
            '<button type="button" class="button" data-listen="greeting-audio">Listen</button>'
            '<audio id="greeting-audio" controls preload="metadata" src="{}?v={}"></audio>'
            '</div><p class="listen-facts">{} characters, {} s spoken (as saved)</p></div>',
            url,
            version,
            len(saved.text),
            f"{rendering.seconds:.1f}",
        )

    @admin.display(description="Called numbers")
    def called_numbers(self, obj: Greeting | None) -> SafeString:
        """The numbers routed to this greeting, linked to where routes are edited."""
        numbers = list(obj.numbers.values_list("number", flat=True)) if obj and obj.pk else []
        routes = reverse("admin:calls_phonenumber_changelist")
        if not numbers:
            return format_html(
                'No number is routed to this greeting. <a href="{}">Route a number</a>', routes
            )
        # Numbers are listed for a saved greeting only.
        assert obj is not None
        return format_html(
            '{} <a href="{}?greeting__id__exact={}">Edit routes</a>',
            ", ".join(numbers),
            routes,
            obj.pk,
        )

    def listen_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Serve the saved greeting as a WAV file (16-bit PCM, 8 kHz) for the admin's player."""
        greeting = self.get_object(request, unquote(object_id))
        if greeting is None or not self.has_view_permission(request, greeting):
            raise Http404("No such greeting.")
        try:
            rendering = _render_saved(greeting)
        except TTSError as exc:
            logger.warning("greeting %s could not be rendered: %s", greeting.pk, exc)
            return HttpResponse(
                preview.explain(exc, greeting.voice),
                status=502,
                content_type="text/plain; charset=utf-8",
            )
        response = HttpResponse(rendering.wav, content_type="audio/wav")
        response["Content-Disposition"] = f'inline; filename="greeting-{greeting.pk}.wav"'
        return response

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


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    list_display = ("number", "greeting", "updated_at")
    list_filter = ("greeting",)
    search_fields = ("number", "greeting__name")
    list_select_related = ("greeting",)
    fields = ("number", "greeting")
