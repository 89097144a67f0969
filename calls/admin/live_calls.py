"""The live-call page: lists the calls on the line and says, clears or hangs up."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from calls.live import commands, presence
from calls.models import Call
from calls.speech.voices import VOICE_CHOICES

# The live-call page lists at most this many calls (the newest).
LIVE_PAGE_LIMIT = 200


class LiveCalls(admin.ModelAdmin):
    """The call admin's live-call page, at live/ beside its change list."""

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
        now_live = presence.live_among(call.call_sid for call in in_progress)
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
                commands.say(
                    call_sid,
                    request.POST.get("text", ""),
                    request.POST.get("voice") or None,
                    interrupt=request.POST.get("interrupt") == "on",
                )
            elif action == "clear":
                commands.clear(call_sid)
            elif action == "hangup":
                commands.hangup(call_sid)
            else:
                raise commands.InvalidCommand(f"unknown action {action!r}")
        except commands.ControlError as exc:
            messages.error(request, f"{call_sid}: {exc}")
            return
        messages.success(request, f"{call_sid}: {action} sent.")
