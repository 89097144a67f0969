"""Request bodies over the limit are refused with 413 by the real server before they are stored."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.devserver import RunningServer, migrate, running_daphne
from tests.bridge import bridge_env

pytestmark = pytest.mark.e2e

LIMIT = 64 * 1024
CALL = {"CallSid": "CA" + "0" * 32, "From": "+15550199999", "To": "+15550100000"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp("body-limit")
    env = bridge_env(tmp, "http://127.0.0.1:9", {"MAX_REQUEST_BODY_BYTES": str(LIMIT)})
    migrate(env)
    with running_daphne(env, tmp / "daphne.log") as running:
        yield running


def connect(server: RunningServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def read_all(sock: socket.socket) -> bytes:
    """Read until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def refusals(server: RunningServer) -> list[str]:
    return [line for line in server.log().splitlines() if "refused" in line]


def test_a_content_length_over_the_limit_is_answered_before_the_body_is_sent(
    server: RunningServer,
) -> None:
    before = len(refusals(server))
    with connect(server) as sock:
        sock.sendall(
            b"POST /voice HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Expect: 100-continue\r\n"
            b"Content-Length: 209715200\r\n\r\n"
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in answer
    assert len(refusals(server)) == before + 1
    assert "Traceback" not in server.log()


def test_a_chunked_body_is_refused_once_past_the_limit(server: RunningServer) -> None:
    chunk = b"x" * 8192
    with connect(server) as sock:
        sock.sendall(
            b"POST /api/calls/CA1/say HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # One chunk past the limit and no end of body: the answer must not wait for the rest.
        for _ in range(LIMIT // len(chunk) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert "Traceback" not in server.log()


def test_a_client_sending_an_oversized_body_whole_reads_the_refusal(
    server: RunningServer,
) -> None:
    response = httpx.post(
        f"{server.url}/voice",
        content=b"x" * (4 * 1024 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert response.json() == {"error": "Request Entity Too Large"}


def test_the_api_refuses_an_oversized_json_body(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.url}/api/calls/CA1/say",
        json={"text": "x" * LIMIT},
        headers={"Authorization": "Bearer anything"},
    )
    assert response.status_code == 413


def test_a_webhook_under_the_limit_is_answered(server: RunningServer) -> None:
    response = httpx.post(f"{server.url}/voice", data=CALL)
    assert response.status_code == 200
    assert "<Stream" in response.text


def test_the_admin_keeps_djangos_larger_limit(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.url}/admin/login/",
        data={"username": "x" * (2 * LIMIT), "password": "y"},
    )
    # Django answers (its CSRF check), not the server's size limit.
    assert response.status_code == 403
