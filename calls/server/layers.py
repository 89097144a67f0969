"""A Redis channel layer whose receive outlives a Redis outage instead of ending every call."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels_redis.core import RedisChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# What an unreachable or stalled Redis raises; any other error is a bug and propagates.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
FIRST_RETRY_SECONDS = 0.1
LAST_RETRY_SECONDS = 1.0


class ResilientRedisChannelLayer(RedisChannelLayer):
    """channels_redis' layer, with a receive that waits for Redis to come back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outage_since: float | None = None

    async def receive(self, channel: str) -> dict[str, Any]:
        """Receive the next message on `channel`, retrying while Redis is unreachable."""
        # Channels ends a consumer whose layer receive raises: every live call would close.
        pause = FIRST_RETRY_SECONDS
        while True:
            try:
                return await super().receive(channel)
            except UNREACHABLE as exc:
                self._note_down(exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, LAST_RETRY_SECONDS)

    async def _brpop_with_clean(self, index: int, channel: str, timeout: int) -> Any:
        member = await super()._brpop_with_clean(index, channel, timeout)
        self._note_up()
        return member

    def _note_down(self, exc: BaseException) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning("channel layer: Redis unreachable (%s); receiving again shortly", exc)

    def _note_up(self) -> None:
        if self._outage_since is not None:
            lasted = time.monotonic() - self._outage_since
            self._outage_since = None
            logger.warning("channel layer: Redis reachable again after %.1f s", lasted)
