"""A PostgreSQL server of a test's own on a spare port, to stop and start again."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from devtools.devserver import free_port

# initdb and pg_ctl refuse to run as root; the server runs as this system user.
SERVER_USER = "postgres"


class PrivatePostgresError(RuntimeError):
    """The private server could not be set up, started or stopped."""


class PrivatePostgres:
    """One initdb'd data directory served by pg_ctl on 127.0.0.1:`port`, with trust auth."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.data = directory / "data"
        self.log_path = directory / "server.log"

    @property
    def url(self) -> str:
        """The URL of its `postgres` database."""
        return f"postgres://{SERVER_USER}@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        """The URL of database `name` on this server."""
        return f"postgres://{SERVER_USER}@127.0.0.1:{self.port}/{name}"

    def init(self) -> None:
        """Create the data directory."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", SERVER_USER, "-E", "UTF8")

    def start(self) -> None:
        """Start the server on its port and wait until it accepts connections."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        """Stop the server at once, cutting its clients off as a crash or failover would."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def log(self) -> str:
        """What the server has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            ["runuser", "-u", SERVER_USER, "--", *command],
            capture_output=True,
            text=True,
            cwd=self.directory,
        )
        if result.returncode != 0:
            raise PrivatePostgresError(
                f"{command[0]} failed ({result.returncode}): {result.stderr}{result.stdout}"
                f"\n{self.log()}"
            )


def missing() -> str | None:
    """Return why a private server cannot be run here, or None when it can."""
    for tool in ("initdb", "pg_ctl", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    if os.geteuid() != 0:
        return f"running the server as {SERVER_USER!r} (runuser) needs root"
    return None


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """Run a fresh private server for the block, then stop it and remove its files."""
    directory = Path(tempfile.mkdtemp(prefix="voicebridge-pg-"))
    shutil.chown(directory, user=SERVER_USER, group=SERVER_USER)
    server = PrivatePostgres(directory, free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        # The test may have left it stopped.
        with contextlib.suppress(PrivatePostgresError):
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
