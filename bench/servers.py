"""The processes under test: a fake Deepgram, voicebridge under daphne, and the floor app."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.callers import TWILIO_AUTH_TOKEN
from bench.floor_webhook import AUTH_TOKEN_VARIABLE
from bench.relay_floor import DEEPGRAM_URL_VARIABLE
from calls.speech.voices import DEFAULT_VOICE
from devtools.devserver import (
    PROJECT_DIR,
    RunningServer,
    free_port,
    migrate,
    running_daphne,
    server_env,
)

ADMIN_USER = "bench"
ADMIN_PASSWORD = "a-long-benchmark-password-1"
FLOOR_APPLICATION = "bench.floor:application"
RELAY_FLOOR_APPLICATION = "bench.relay_floor:application"
CACHED_FLOOR_APPLICATION = "bench.cached_floor:application"


class BenchError(RuntimeError):
    """A process the benchmark needs did not behave."""


@dataclass(frozen=True)
class FakeDeepgramProcess:
    """`python -m devtools.fake_deepgram` in its own process, so its CPU is not the server's."""

    url: str
    process: subprocess.Popen[str]

    def stats(self) -> dict[str, Any]:
        """Return what the fake has served so far."""
        return httpx.get(f"{self.url}/_fake/stats", timeout=10).json()

    def script(self, **action: Any) -> None:
        """Send a scripting action (fail, stall, reset...) to the fake."""
        httpx.post(f"{self.url}/_fake/script", json=action, timeout=10).raise_for_status()


@contextmanager
def fake_deepgram(ttfb: float, speed: float) -> Iterator[FakeDeepgramProcess]:
    """Run the fake Deepgram CLI on 127.0.0.1 until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.fake_deepgram", "--port", "0"]
        + ["--ttfb", str(ttfb), "--speed", str(speed)],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.match(r"listening on (\S+)", line)
        if match is None:
            raise BenchError(f"fake Deepgram did not start: {line!r}")
        yield FakeDeepgramProcess(match[1], process)
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass(frozen=True)
class Voicebridge:
    """Everything a voicebridge server needs in order to run, and be run again, in `workdir`."""

    workdir: Path
    env: dict[str, str]

    @property
    def database(self) -> Path:
        return self.workdir / "db.sqlite3"

    @contextmanager
    def running(self, log_name: str = "daphne.log") -> Iterator[RunningServer]:
        """Serve voicebridge with daphne until the block ends."""
        port = free_port()
        env = {**self.env, "PUBLIC_URL": f"http://127.0.0.1:{port}"}
        with running_daphne(env, self.workdir / log_name, port=port) as server:
            yield server

    def set_greeting_text(self, text: str) -> None:
        """Change the default greeting behind the admin's back: nothing renders it ahead."""
        with sqlite3.connect(self.database) as db:
            db.execute("UPDATE calls_greeting SET text = ? WHERE is_default", (text,))

    def route_numbers(self, routes: Sequence[tuple[str, str]]) -> None:
        """Give each called number a greeting of its own with the given text."""
        with sqlite3.connect(self.database) as db:
            for number, text in routes:
                greeting = db.execute(
                    "INSERT INTO calls_greeting (name, text, voice, say_text, is_default,"
                    " created_at, updated_at) VALUES (?, ?, 'aura-asteria-en', '', 0,"
                    " datetime('now'), datetime('now'))",
                    (f"bench {number}", text),
                ).lastrowid
                db.execute(
                    "INSERT INTO calls_phonenumber (number, greeting_id, created_at, updated_at)"
                    " VALUES (?, ?, datetime('now'), datetime('now'))",
                    (number, greeting),
                )

    def last_call(self) -> tuple[str, bool | None]:
        """Return the status and from_cache of the latest Call row."""
        with sqlite3.connect(self.database) as db:
            row = db.execute(
                "SELECT status, from_cache FROM calls_call ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return (row[0], None if row[1] is None else bool(row[1]))


def prepare_voicebridge(
    workdir: Path, deepgram_url: str, *, deepgram_concurrency: int
) -> Voicebridge:
    """Create the database, migrate it and add an admin user."""
    env = server_env(
        {
            "DEBUG": "false",
            "SECRET_KEY": "benchmark-secret-key-that-is-long-enough-and-only-local",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "DEEPGRAM_API_URL": deepgram_url,
            "DEEPGRAM_API_KEY": "benchmark-key",
            # Deepgram's project limit is not what is measured: the cap stays above the load.
            "DEEPGRAM_MAX_CONCURRENCY": str(deepgram_concurrency),
            # Signed like production: the callers sign, the server checks every signature.
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "LOG_LEVEL": "WARNING",
            "SPEECH_CACHE_DIR": str(workdir / "speech-cache"),
            "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
        }
    )
    env.pop("REDIS_URL", None)
    migrate(env)
    subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput"]
        + ["--username", ADMIN_USER, "--email", "bench@example.com"],
        cwd=PROJECT_DIR,
        env=env,
        check=True,
        capture_output=True,
    )
    return Voicebridge(workdir, env)


@contextmanager
def floor(workdir: Path, application: str = FLOOR_APPLICATION) -> Iterator[RunningServer]:
    """Serve a bare ASGI floor app under the same daphne (by default the one dropping frames)."""
    log = workdir / f"{application.split(':')[0].rsplit('.', 1)[-1]}.log"
    env = server_env({AUTH_TOKEN_VARIABLE: TWILIO_AUTH_TOKEN})
    with running_daphne(env, log, application=application) as server:
        yield server


@contextmanager
def relay_floor(workdir: Path, deepgram_url: str) -> Iterator[RunningServer]:
    """Serve the first-audio floor app with the same daphne, asking the fake at `deepgram_url`."""
    env = server_env({DEEPGRAM_URL_VARIABLE: deepgram_url, AUTH_TOKEN_VARIABLE: TWILIO_AUTH_TOKEN})
    log = workdir / "relay-floor.log"
    with running_daphne(env, log, application=RELAY_FLOOR_APPLICATION) as server:
        yield server


def save_greeting_in_admin(base_url: str, text: str) -> None:
    """Sign in to the admin and save the default greeting (id 1) with new text."""
    token = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
    with httpx.Client(base_url=base_url, timeout=60) as admin:
        # Production settings mark cookies Secure, which a client keeps off plain http:
        # carry them by hand.
        jar: dict[str, str] = {}

        def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
            cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
            response = admin.request(method, url, headers={"Cookie": cookie}, **kwargs)
            jar.update(response.cookies.items())
            return response

        def csrf_token(page: httpx.Response) -> str:
            match = token.search(page.text)
            assert match is not None, f"no CSRF token in {page.url}"
            return match[1]

        page = request("GET", "/admin/login/")
        login = request(
            "POST",
            "/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": csrf_token(page),
                "username": ADMIN_USER,
                "password": ADMIN_PASSWORD,
            },
        )
        if login.status_code != 302:
            raise BenchError(f"admin login failed: {login.status_code}")
        form = request("GET", "/admin/calls/greeting/1/change/")
        saved = request(
            "POST",
            "/admin/calls/greeting/1/change/",
            data={
                "csrfmiddlewaretoken": csrf_token(form),
                "name": "Default",
                "say_text": "",
                "text": text,
                "voice": DEFAULT_VOICE,
                "is_default": "on",
            },
        )
        if saved.status_code != 302:
            raise BenchError(f"admin save failed: {saved.status_code}: {saved.text[:300]}")
