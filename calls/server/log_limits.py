"""Warnings about one call, one line per kind: a stream of bad frames writes a handful of lines."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable


class LogLimiter:
    """Logs a call's warnings with its CallSid, the first of each kind; counts the rest."""

    def __init__(self, logger: logging.Logger, call_sid: Callable[[], str]) -> None:
        self._logger = logger
        self._call_sid = call_sid
        self._counts: Counter[str] = Counter()

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log a warning of this kind, if it is the call's first."""
        self._log(logging.WARNING, kind, message, args, exc_info=False)

    def exception(self, kind: str, message: str, *args: object) -> None:
        """Log an error of this kind with its traceback, if it is the call's first."""
        self._log(logging.ERROR, kind, message, args, exc_info=True)

    def summary(self) -> None:
        """Say how many warnings were not logged, in one line."""
        unlogged = {kind: count - 1 for kind, count in self._counts.items() if count > 1}
        if unlogged:
            self._logger.info(
                "call %s: %d more warnings not logged (%s)",
                self._call_sid(),
                sum(unlogged.values()),
                ", ".join(f"{kind} x{count}" for kind, count in sorted(unlogged.items())),
            )

    def _log(
        self, level: int, kind: str, message: str, args: tuple[object, ...], *, exc_info: bool
    ) -> None:
        self._counts[kind] += 1
        if self._counts[kind] == 1:
            self._logger.log(
                level, "call %s: " + message, self._call_sid(), *args, exc_info=exc_info
            )
