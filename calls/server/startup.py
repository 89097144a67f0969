"""The worker's start-up step, run once when daphne loads the ASGI application."""

from __future__ import annotations

import gc

from django.conf import settings

from calls.server import bounded_http
from calls.server.malloc import cap_arenas
from calls.speech import deepgram_io
from calls.twilio.security import announce_policy


def prepare_worker() -> None:
    """Ready this process to take calls: limits, memory, the Deepgram client, the collector."""
    announce_policy()
    # Request bodies and slow requests are bounded where daphne reads them, before Django.
    bounded_http.install()
    # Before any thread but the main one starts.
    cap_arenas(settings.MALLOC_ARENA_MAX)
    # Otherwise the first uncached call after a start builds the TLS context and the pool.
    deepgram_io.prepare()
    # What start-up loaded lives as long as the process: the collector's full passes skip it.
    gc.freeze()
