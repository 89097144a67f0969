"""The Deepgram loop: coroutines run on their own thread, whatever the caller's loop is doing."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time

import pytest

from calls.speech import deepgram, deepgram_io


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


async def _pool_ready() -> bool:
    return deepgram.shared_transport.peek() is not None


async def test_prepare_readies_the_connection_pool_before_the_first_call() -> None:
    await deepgram_io.close_client()
    assert not await asyncio.wrap_future(deepgram_io.submit(_pool_ready()))

    await asyncio.to_thread(deepgram_io.prepare)

    assert await asyncio.wrap_future(deepgram_io.submit(_pool_ready()))
    assert "anyio._backends._asyncio" in sys.modules


async def test_prepare_that_fails_says_so_and_lets_the_server_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise OSError("no certificates")

    monkeypatch.setattr(deepgram_io, "warm_up", broken)
    with caplog.at_level(logging.WARNING, logger="calls.speech.deepgram_io"):
        await asyncio.to_thread(deepgram_io.prepare)

    assert "could not be readied" in caplog.text
    assert "no certificates" in caplog.text
