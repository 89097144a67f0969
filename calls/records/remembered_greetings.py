"""The greeting last answered for each called number, kept in memory for when the database fails."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from calls.models import Greeting
from calls.records import queries

# More numbers than one deployment answers; the least recently called are forgotten first.
NUMBERS_LIMIT = 10_000


@dataclass(frozen=True)
class GreetingCopy:
    """What the voice webhook needs of a greeting, read from the database at some point."""

    pk: int | None
    voice: str
    text: str
    say_text: str

    @classmethod
    def of(cls, greeting: Greeting) -> GreetingCopy:
        """Copy the fields the webhook answers with."""
        return cls(greeting.pk, greeting.voice, greeting.text, greeting.say_text)


class RememberedGreetings:
    """Copies of the greetings answered per called number, and of the default greeting."""

    def __init__(self) -> None:
        # Webhooks run in threads of their own.
        self._lock = threading.Lock()
        self._by_number: OrderedDict[str, GreetingCopy] = OrderedDict()
        self._default: GreetingCopy | None = None

    def remember(self, to: str, greeting: Greeting) -> GreetingCopy:
        """Note that calls to `to` were answered with `greeting`; return its copy."""
        copy = GreetingCopy.of(greeting)
        with self._lock:
            self._by_number[to] = copy
            self._by_number.move_to_end(to)
            if len(self._by_number) > NUMBERS_LIMIT:
                self._by_number.popitem(last=False)
            if greeting.is_default:
                self._default = copy
        return copy

    def recall(self, to: str) -> GreetingCopy:
        """The greeting last answered for `to`, else the default one, else the built-in one."""
        with self._lock:
            found = self._by_number.get(to) or self._default
        return found or GreetingCopy.of(queries.FALLBACK_GREETING)

    def forget(self) -> None:
        """Forget every copy, as a process that has read nothing yet."""
        with self._lock:
            self._by_number.clear()
            self._default = None


# This process's copies.
remembered = RememberedGreetings()
