"""Shared fixtures: a fake Deepgram on 127.0.0.1 and clean speech caches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from asgiref.sync import SyncToAsync
from django.core.cache import caches
from django.db import connections
from pytest_django.fixtures import Settings

from calls.speech import deepgram_io, synthesis
from calls.speech.cache import CACHE_ALIAS, memory
from calls.speech.deepgram import close_connections
from devtools.fake_deepgram import FakeDeepgram


@pytest.fixture(autouse=True)
def empty_speech_caches() -> Iterator[None]:
    memory.clear()
    synthesis._described.clear()
    caches[CACHE_ALIAS].clear()
    yield
    memory.clear()
    synthesis._described.clear()
    caches[CACHE_ALIAS].clear()


@pytest.fixture(autouse=True)
def close_sync_thread_connections() -> Iterator[None]:
    yield
    # Django's async ORM calls in tests (aget, acount, ...) run in asgiref's one sync thread,
    # where nothing closes their connection; PostgreSQL would refuse to drop the test database.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture
async def deepgram(settings: Settings) -> AsyncIterator[FakeDeepgram]:
    """A fake Deepgram in this test's event loop, with settings pointing at it."""
    server = FakeDeepgram()
    await server.start()
    settings.DEEPGRAM_API_URL = server.url
    settings.DEEPGRAM_API_KEY = "test-deepgram-key"
    yield server
    await close_connections()
    await deepgram_io.close_client()
    await server.stop()
