"""Slow and idle HTTP connections are closed by the real server, and calls still get through."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest

from devtools.devserver import RunningServer, migrate, running_daphne
from tests.bridge import bridge_env

pytestmark = pytest.mark.e2e

READ_TIMEOUT = 3.0
IDLE_TIMEOUT = 2.0
# The server's timers fire on its own loop; allow it a moment beyond the timeout.
SLACK = 1.5
CALL = {"CallSid": "CA" + "1" * 32, "From": "+15550199999", "To": "+15550100000"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp("http-timeouts")
    env = bridge_env(
        tmp,
        "http://127.0.0.1:9",
        {"HTTP_REQUEST_READ_TIMEOUT": str(READ_TIMEOUT), "HTTP_IDLE_TIMEOUT": str(IDLE_TIMEOUT)},
    )
    migrate(env)
    with running_daphne(env, tmp / "daphne.log") as running:
        yield running


def dribble(server: RunningServer, request: bytes) -> tuple[bytes, float]:
    """Send `request` one byte a second until the server answers or closes; return what it said."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(1.0)
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionError:
                return b"", time.monotonic() - started
            while chunk := sock.recv(65536):
                answer += chunk
            return answer, time.monotonic() - started
    raise AssertionError("the whole request was sent and the server never closed the connection")


def test_a_request_head_dribbled_a_byte_a_second_is_cut_off(server: RunningServer) -> None:
    request = b"POST /voice HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"p" * 60 + b"\r\n\r\n"
    answer, took = dribble(server, request)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert took < READ_TIMEOUT + SLACK


def test_a_body_dribbled_a_byte_a_second_is_cut_off(server: RunningServer) -> None:
    head = b"POST /voice HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 60\r\n"
    answer, took = dribble(server, head + b"\r\n" + b"a" * 60)
    assert answer.startswith(b"HTTP/1.1 408 ")
    # The head alone took longer than the deadline to send, so it held from the first byte.
    assert took < READ_TIMEOUT + SLACK
    assert "Traceback" not in server.log()


def test_a_thousand_idle_connections_are_closed_and_a_call_gets_through(
    server: RunningServer,
) -> None:
    selector = selectors.DefaultSelector()
    for _ in range(1000):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    # Each was idle from its own opening; the last opened is closed within the timeout too.
    deadline = time.monotonic() + IDLE_TIMEOUT + SLACK
    closed = 0
    try:
        while closed < 1000 and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                assert ready.recv(1) == b""
                selector.unregister(ready)
                ready.close()
                closed += 1
    finally:
        for key in list(selector.get_map().values()):
            # Only sockets were registered.
            cast(socket.socket, key.fileobj).close()
        selector.close()
    assert closed == 1000
    response = httpx.post(f"{server.url}/voice", data=CALL)
    assert response.status_code == 200


def test_a_connection_kept_alive_between_requests_serves_both(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        first = client.post("/voice", data=CALL)
        time.sleep(IDLE_TIMEOUT / 2)
        second = client.post("/voice", data=CALL)
    assert (first.status_code, second.status_code) == (200, 200)
