"""Calls a killed worker left "in progress": finished by a command and once per server process."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError

from calls import services

logger = logging.getLogger(__name__)

_swept = threading.Event()


def finish_stale_calls(*, older_than: float | None = None) -> int:
    """Fail calls in progress for longer than `older_than` seconds (STALE_CALL_SECONDS)."""
    seconds = settings.STALE_CALL_SECONDS if older_than is None else older_than
    count = services.calls_finish_stale(older_than=timedelta(seconds=seconds))
    if count:
        logger.warning("finished %d call(s) left in progress by a stopped server", count)
    return count


def sweep_once() -> None:
    """Finish stale calls the first time this process serves Twilio; never raise."""
    # Only rows older than any call a live worker could still hold are touched, so several
    # workers sweeping at once agree.
    if _swept.is_set():
        return
    _swept.set()
    try:
        finish_stale_calls()
    except DatabaseError as exc:
        logger.warning("could not finish stale calls: %s", exc)
