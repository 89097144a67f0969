"""Admin pages: greetings are edited here; calls are a read-only log with live-call control."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from calls import control, live
from calls.models import Call, CallUtterance, Greeting
from calls.voices import VOICE_CHOICES

# The live-call page lists at most this many calls (the newest).
LIVE_PAGE_LIMIT = 200


@admin.register(Greeting)
class GreetingAdmin(admin.ModelAdmin):
    list_display = ("name", "voice", "is_default", "updated_at")
    list_filter = ("voice", "is_default")
    search_fields = ("name", "text", "say_text")
    fields = ("name", "say_text", "text", "voice", "is_default")


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
