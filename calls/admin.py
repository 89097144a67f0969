"""Admin pages: greetings are edited (and heard) here, numbers routed; calls are a read-only log
with live-call control."""

from __future__ import annotations

import csv
import logging

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from calls import control, listen, live, services
from calls.models import Call, CallUtterance, Greeting, PhoneNumber
from calls.speech import render_ahead, speech_key
from calls.tts import TTSError
from calls.voices import VOICE_CHOICES

logger = logging.getLogger(__name__)

# The live-call page lists at most this many calls (the newest).
LIVE_PAGE_LIMIT = 200


def _render_saved(greeting: Greeting) -> listen.Rendering:
    """Render a greeting from a sync view: under daphne this runs on the server's event loop."""
    return async_to_sync(listen.render)(greeting.voice, greeting.text)


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
        saved = services.greeting_get(greeting_id=obj.pk) if obj is not None else None
        if saved is None:
            return "Save the greeting to listen to it."
        try:
            rendering = _render_saved(saved)
        except TTSError as exc:
            logger.warning("greeting %s could not be rendered: %s", saved.pk, exc)
            return format_html(
                '<p class="errornote listen-error">{}</p>', listen.explain(exc, saved.voice)
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
                listen.explain(exc, greeting.voice),
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


# Spreadsheets run cells that start like a formula; a leading quote keeps them text.
_FORMULA_START = ("=", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    if isinstance(value, str) and (
        value.startswith(_FORMULA_START)
        or (value[:1] in ("+", "-") and not value[1:].replace(" ", "").isdigit())
    ):
        return "'" + value
    return value


CSV_COLUMNS = (
    "call_sid",
    "stream_sid",
    "started_at",
    "ended_at",
    "from",
    "to",
    "greeting",
    "status",
    "duration_s",
    "first_audio_ms",
    "from_cache",
    "interrupted",
    "playback_confirmed",
    "error",
)


def _csv_row(call: Call) -> list[object]:
    duration = call.duration
    return [
        call.call_sid,
        call.stream_sid,
        call.started_at.isoformat(),
        call.ended_at.isoformat() if call.ended_at else "",
        call.from_number,
        call.to_number,
        call.greeting.name if call.greeting else "",
        call.status,
        f"{duration.total_seconds():.3f}" if duration is not None else "",
        f"{call.first_audio_ms:.1f}" if call.first_audio_ms is not None else "",
        "" if call.from_cache is None else call.from_cache,
        call.interrupted,
        call.playback_confirmed,
        call.error,
    ]


class CallUtteranceInline(admin.TabularInline):
    model = CallUtterance
    fields = ("requested_at", "text", "voice", "interrupt", "played")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    change_list_template = "admin/calls/call/change_list.html"
    inlines = [CallUtteranceInline]
    list_display = (
        "started_at",
        "call_sid",
        "from_number",
        "to_number",
        "greeting",
        "status",
        "duration_seconds",
        "first_audio_ms",
        "from_cache",
        "interrupted",
        "playback_confirmed",
    )
    list_filter = ("status", "greeting", "to_number")
    search_fields = ("call_sid", "stream_sid", "from_number", "to_number")
    date_hierarchy = "started_at"
    list_select_related = ("greeting",)
    actions = ("export_csv",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        live_view = self.admin_site.admin_view(self.live_view)
        return [path("live/", live_view, name="calls_call_live"), *super().get_urls()]

    def live_view(self, request: HttpRequest) -> HttpResponse:
        """List the live calls with say, clear and hang-up forms; run the one posted."""
        if not request.user.has_perm("calls.control_call"):
            raise PermissionDenied
        if request.method == "POST":
            self._control(request)
            return redirect("admin:calls_call_live")
        in_progress = list(Call.objects.filter(status=Call.Status.IN_PROGRESS)[:LIVE_PAGE_LIMIT])
        # Rows of a worker that died stay in progress; only the presence key means live.
        now_live = live.live_among(call.call_sid for call in in_progress)
        context = {
            **self.admin_site.each_context(request),
            "title": "Live calls",
            "opts": self.opts,
            "calls": [call for call in in_progress if call.call_sid in now_live],
            "voice_choices": VOICE_CHOICES,
        }
        return TemplateResponse(request, "admin/calls/call/live.html", context)

    def _control(self, request: HttpRequest) -> None:
        call_sid = request.POST.get("call_sid", "")
        action = request.POST.get("action", "")
        try:
            if action == "say":
                control.say(
                    call_sid,
                    request.POST.get("text", ""),
                    request.POST.get("voice") or None,
                    interrupt=request.POST.get("interrupt") == "on",
                )
            elif action == "clear":
                control.clear(call_sid)
            elif action == "hangup":
                control.hangup(call_sid)
            else:
                raise control.InvalidCommand(f"unknown action {action!r}")
        except control.ControlError as exc:
            messages.error(request, f"{call_sid}: {exc}")
            return
        messages.success(request, f"{call_sid}: {action} sent.")

    @admin.display(description="duration (s)")
    def duration_seconds(self, call: Call) -> str | None:
        duration = call.duration
        return f"{duration.total_seconds():.1f}" if duration is not None else None

    @admin.action(description="Export selected calls as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Call]) -> HttpResponse:
        """Download the selected calls, one row each, for a spreadsheet."""
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="calls-{stamp}.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_COLUMNS)
        for call in queryset.select_related("greeting").order_by("-started_at"):
            writer.writerow([_csv_cell(value) for value in _csv_row(call)])
        return response
