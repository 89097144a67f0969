"""Starts and stops a real daphne process serving voicebridge, for tests and the benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent

# As in production (the README's daphne command line).
HTTP_APPLICATION_TIMEOUT = 30


class ServerError(RuntimeError):
    """The server process could not be started."""


@dataclass(frozen=True)
class RunningServer:
    """A daphne process listening on 127.0.0.1."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """Return what the server has written to its log so far."""
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """Return the environment for a server process: this one's without voicebridge's settings
    (the developer's own, or a `.env`), then the overrides."""
    env = {k: v for k, v in os.environ.items() if k not in _settings_variables()}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["ENV_FILE"] = ""
    env.update(overrides)
    return env


def _settings_variables() -> set[str]:
    """Every variable voicebridge's settings read: the ones `.env.example` lists."""
    lines = (line.strip() for line in (PROJECT_DIR / ".env.example").read_text().splitlines())
    return {line.partition("=")[0] for line in lines if line and not line.startswith("#")}


def migrate(env: Mapping[str, str]) -> None:
    """Apply migrations to the database the environment names."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=PROJECT_DIR,
        env=dict(env),
        check=True,
    )


@contextmanager
def running_daphne(
    env: Mapping[str, str],
    log_path: Path,
    *,
    port: int | None = None,
    timeout: float = 30.0,
    application: str = "voicebridge.asgi:application",
) -> Iterator[RunningServer]:
    """Run daphne serving `application` on 127.0.0.1 until the block ends."""
    port = port or free_port()
    env = dict(env)
    # Speech rendered by a test or benchmark server stays beside its log, never in the project.
    env.setdefault("SPEECH_CACHE_DIR", str(log_path.parent / "speech-cache"))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                # Seconds the application may take to answer an HTTP request before daphne's 503.
                "--http-timeout",
                str(HTTP_APPLICATION_TIMEOUT),
                application,
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        _wait_listening(server, timeout)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_listening(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"daphne exited with {server.process.returncode}:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"daphne did not listen within {timeout} s:\n{server.log()}")
