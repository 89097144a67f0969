"""`manage.py finish_stale_calls`: fail the calls a killed worker left in progress."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from calls.records.stale import finish_stale_calls


class Command(BaseCommand):
    help = (
        "Mark calls still in progress after --older-than seconds (default STALE_CALL_SECONDS) "
        "as failed. Use --older-than 0 only when no server is running."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=float, default=None, metavar="SECONDS")

    def handle(self, *args: Any, older_than: float | None, **options: Any) -> None:
        count = finish_stale_calls(older_than=older_than)
        self.stdout.write(f"Finished {count} stale call(s).")
