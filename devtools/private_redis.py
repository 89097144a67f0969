"""A redis-server of a test's own on a spare port, which the test may stop and start again."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from devtools.devserver import free_port

_START_TIMEOUT = 10.0


class PrivateRedisError(RuntimeError):
    """The private redis-server could not be started."""


def redis_server_missing() -> str | None:
    """Return why no private redis-server can run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    return None


class PrivateRedis:
    """One redis-server process on 127.0.0.1, keeping nothing on disk: a restart starts empty."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the server process is up."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server on its port and return once it answers."""
        if self.running:
            return
        log = open(self._directory / "redis.log", "ab")  # noqa: SIM115
        with log:
            self._process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self._directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_answering()

    def stop(self) -> None:
        """Stop the server at once, as a crash would; its data is gone."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(timeout=10)

    def _wait_answering(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + _START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if not self.running:
                    raise PrivateRedisError(f"redis-server on port {self.port} exited")
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        raise PrivateRedisError(f"redis-server on port {self.port} did not answer in time")


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """Run a private redis-server for the block, and stop it afterwards."""
    with tempfile.TemporaryDirectory(prefix="voicebridge-redis-") as directory:
        server = PrivateRedis(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()
