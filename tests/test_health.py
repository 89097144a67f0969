"""/healthz says the process answers; /readyz says whether it can take calls, within seconds."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.test import AsyncClient
from pytest_django.fixtures import Settings

from calls.server import drain
from devtools.devserver import migrate, running_daphne
from tests.bridge import bridge_env


@pytest.fixture
def client() -> AsyncClient:
    return AsyncClient()


async def test_healthz_answers_ok(client: AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_readyz_names_every_check_when_all_answer(client: AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {
            "database": "ok",
            "cache": "ok",
            "channel_layer": "ok",
            "accepting_calls": "ok",
        },
    }


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_readyz_is_unavailable_while_draining(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drain, "_draining", True)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["accepting_calls"]
    assert response.json()["checks"]["accepting_calls"] == "draining"


async def test_the_probes_answer_only_get(client: AsyncClient) -> None:
    assert (await client.post("/healthz")).status_code == 405
    assert (await client.post("/readyz")).status_code == 405


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word, as a hung server does."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for sock in held:
        sock.close()
    listener.close()


@pytest.mark.e2e
def test_hung_dependencies_answer_503_in_seconds_and_healthz_still_200(
    silent_port: int, tmp_path: Path
) -> None:
    env = bridge_env(
        tmp_path,
        "http://127.0.0.1:9",
        {
            "DATABASE_URL": f"postgres://voicebridge:x@127.0.0.1:{silent_port}/voicebridge",
            "REDIS_URL": f"redis://127.0.0.1:{silent_port}/0",
            "READINESS_CHECK_TIMEOUT": "1",
        },
    )
    with running_daphne(env, tmp_path / "daphne.log") as server:
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
        started = time.monotonic()
        response = httpx.get(f"{server.url}/readyz", timeout=10)
        took = time.monotonic() - started
        again = httpx.get(f"{server.url}/readyz", timeout=10)
    assert response.status_code == 503
    assert response.json()["failing"] == ["database", "cache", "channel_layer"]
    assert took < 2.5
    # A probe still hung from the first request is waited on, not joined by another.
    assert again.status_code == 503
    assert "Traceback" not in server.log()


def redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.e2e
@pytest.mark.skipif(not redis_answers(), reason="no Redis on 127.0.0.1:6379")
def test_readyz_is_ok_with_redis_as_cache_and_channel_layer(tmp_path: Path) -> None:
    env = bridge_env(tmp_path, "http://127.0.0.1:9", {"REDIS_URL": "redis://127.0.0.1:6379/0"})
    migrate(env)
    with running_daphne(env, tmp_path / "daphne.log") as server:
        response = httpx.get(f"{server.url}/readyz", timeout=10)
    assert response.status_code == 200, response.text
    assert set(response.json()["checks"].values()) == {"ok"}


async def test_the_probes_are_not_redirected_to_https(settings: Settings) -> None:
    settings.SECURE_SSL_REDIRECT = True
    assert (await AsyncClient().get("/healthz")).status_code == 200
    assert (await AsyncClient().get("/voice")).status_code == 301
