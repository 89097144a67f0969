"""The Deepgram loop: coroutines run on their own thread, whatever the caller's loop is doing."""

from __future__ import annotations

import asyncio
import threading
import time

from calls import deepgram_io


async def test_runs_on_its_own_thread_and_hands_back_the_result() -> None:
    async def where() -> str:
        return threading.current_thread().name

    ran_on = await asyncio.wrap_future(deepgram_io.submit(where()))
    assert ran_on == "deepgram-io"
    assert ran_on != threading.current_thread().name


async def test_a_busy_caller_loop_does_not_hold_the_coroutine_back() -> None:
    started = threading.Event()

    async def note() -> None:
        started.set()

    future = deepgram_io.submit(note())
    # This loop is busy (as the server's is with a burst of `start`s): it never yields here.
    time.sleep(0.2)
    assert started.is_set()
    await asyncio.wrap_future(future)


async def test_cancelling_the_future_cancels_the_coroutine_there() -> None:
    entered, cancelled = threading.Event(), threading.Event()

    async def wait_forever() -> None:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    future = deepgram_io.submit(wait_forever())
    assert await asyncio.to_thread(entered.wait, 5)
    future.cancel()
    assert await asyncio.to_thread(cancelled.wait, 5)
