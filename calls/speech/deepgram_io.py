"""The thread whose event loop makes the Deepgram requests for calls' speech.

On the server's loop a request waits its turn behind every ready task at each of httpx's
awaits; a burst of fifty `start`s holds the first caller's request back until the burst is
handled. On a loop of its own the request leaves while the burst is still being read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from calls.speech.deepgram import close_connections, warm_up

logger = logging.getLogger(__name__)

T = TypeVar("T")

WARM_UP_SECONDS = 10.0

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _running_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="deepgram-io", daemon=True).start()
        return _loop


def submit(coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Run `coroutine` on the Deepgram loop; cancelling the future cancels it there."""
    return asyncio.run_coroutine_threadsafe(coroutine, _running_loop())


def prepare() -> None:
    """Start the Deepgram loop and ready its connection pool before the first call needs it."""
    try:
        submit(warm_up()).result(timeout=WARM_UP_SECONDS)
    except Exception:
        # The first call builds what is missing, and reports what fails then.
        logger.warning("the Deepgram client could not be readied at start-up", exc_info=True)


async def close_client() -> None:
    """Close the Deepgram loop's connections (between tests)."""
    if _loop is not None:
        await asyncio.wrap_future(submit(close_connections()))
