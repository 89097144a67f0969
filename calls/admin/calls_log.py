"""The call log: read-only rows with their utterances, a CSV export, and the live-call page."""

from __future__ import annotations

import csv

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from calls.admin.live_calls import LiveCalls
from calls.models import Call, CallUtterance

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
class CallAdmin(LiveCalls):
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
        "streams",
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
