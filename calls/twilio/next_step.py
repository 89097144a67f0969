"""What Twilio's action request should answer for a call whose stream has ended, kept where any
worker can read it: the stream may end on one worker and the request reach another."""

from __future__ import annotations

import logging
from typing import Literal, cast, get_args

from django.core.cache import caches

from calls.server.cache_calls import cache_call

logger = logging.getLogger(__name__)

Step = Literal["hangup", "say", "resume"]
STEPS: frozenset[str] = frozenset(get_args(Step))
# Twilio requests the action URL within moments of the stream closing; an hour is ample.
KEEP_SECONDS = 3600
CACHE_ALIAS = "default"


def _key(call_sid: str) -> str:
    return f"calls:next-step:{call_sid}"


async def note(call_sid: str, step: Step) -> None:
    """Record what comes next for the call; a cache that cannot be reached is logged, not raised."""
    try:
        await cache_call(CACHE_ALIAS, "set", _key(call_sid), step, KEEP_SECONDS)
    except Exception as exc:
        logger.warning("call %s: could not note its next step %r: %s", call_sid, step, exc)


def read(call_sid: str) -> Step | None:
    """Return what was noted for the call, or None (nothing noted, or the cache is down)."""
    try:
        step = caches[CACHE_ALIAS].get(_key(call_sid))
    except Exception as exc:
        logger.warning("call %s: could not read its next step: %s", call_sid, exc)
        return None
    return cast(Step, step) if step in STEPS else None
