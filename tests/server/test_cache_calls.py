"""Which cache calls run on the event loop and which go to a thread."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_django.fixtures import Settings

from calls.server.cache_calls import cache_call, runs_inline


@pytest.fixture
def file_speech_cache(settings: Settings, tmp_path: Path) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "speech": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path),
            "TIMEOUT": None,
        },
    }


def test_local_memory_runs_inline() -> None:
    assert runs_inline("default", "get")
    assert runs_inline("default", "set")


@pytest.mark.usefixtures("file_speech_cache")
def test_file_cache_reads_inline_and_writes_in_a_thread() -> None:
    assert runs_inline("speech", "get")
    assert not runs_inline("speech", "set")


@pytest.mark.usefixtures("file_speech_cache")
async def test_file_cache_round_trip() -> None:
    assert await cache_call("speech", "get", "k") is None
    await cache_call("speech", "set", "k", b"audio", None)
    assert await cache_call("speech", "get", "k") == b"audio"
