"""Admin pages for greetings and numbers, the call log and the live calls."""

from __future__ import annotations

from calls.admin import calls_log, greetings

__all__ = ["calls_log", "greetings"]
