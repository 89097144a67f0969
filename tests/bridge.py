"""A running bridge for tests that need real sockets: daphne on a fresh database with an admin."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from devtools.devserver import PROJECT_DIR, RunningServer, migrate, running_daphne, server_env

ADMIN_USER = "admin"
ADMIN_PASSWORD = "a-long-test-password-1"


def bridge_env(
    tmp: Path, deepgram_url: str, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The server's environment: DEBUG, its own SQLite file, the fake Deepgram (and overrides)."""
    return server_env(
        {
            "DEBUG": "true",
            "SECRET_KEY": "live-secret-key-that-is-long-enough-for-tests-only",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "DEEPGRAM_API_URL": deepgram_url,
            "DEEPGRAM_API_KEY": "live-key",
            "TWILIO_AUTH_TOKEN": "",
            "PUBLIC_URL": "",
            "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
            **(overrides or {}),
        }
    )


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run manage.py against the server's database; fail loudly with its output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


@contextmanager
def running_bridge(tmp: Path, deepgram_url: str) -> Iterator[tuple[RunningServer, dict[str, str]]]:
    """Migrate, create the admin user, and serve with daphne until the block ends."""
    env = bridge_env(tmp, deepgram_url)
    migrate(env)
    manage(env, "createsuperuser", "--noinput", "--username", ADMIN_USER, "--email", "a@b.example")
    with running_daphne(env, tmp / "daphne.log") as server:
        yield server, env
