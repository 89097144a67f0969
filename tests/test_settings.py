"""Settings read from the environment: what a deployment's variables turn into."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devtools.devserver import PROJECT_DIR

POSTGRES = "postgres://voicebridge:secret@db.internal:5432/voicebridge"


def database_options(**env: str) -> dict[str, Any]:
    """Import the settings in a fresh interpreter with `env` and return the database's OPTIONS."""
    options = read_settings("DATABASES['default'].get('OPTIONS', {})", **env)
    assert isinstance(options, dict)
    return options


def read_settings(expression: str, **env: str) -> object:
    """Import the settings in a fresh interpreter with `env`; return `s.<expression>`."""
    script = f"import json, voicebridge.settings as s; print(json.dumps(s.{expression}))"
    read = {
        "DATABASE_URL",
        "DATABASE_POOL_SIZE",
        "DATABASE_POOL_TIMEOUT",
        "DATABASE_CONNECT_TIMEOUT",
        "MALLOC_ARENA_MAX",
    }
    base = {k: v for k, v in os.environ.items() if k not in read} | {"ENV_FILE": ""}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_postgresql_connections_are_pooled_per_worker() -> None:
    options = database_options(DATABASE_URL=POSTGRES)
    assert options["pool"] == {
        "min_size": 1,
        "max_size": 10,
        "timeout": 3.0,
        "reconnect_timeout": 10,
    }


def test_pool_size_comes_from_the_environment() -> None:
    options = database_options(DATABASE_URL=POSTGRES, DATABASE_POOL_SIZE="4")
    assert options["pool"] == {
        "min_size": 1,
        "max_size": 4,
        "timeout": 3.0,
        "reconnect_timeout": 10,
    }


def test_a_database_that_does_not_answer_fails_within_seconds() -> None:
    options = database_options(
        DATABASE_URL=POSTGRES, DATABASE_POOL_TIMEOUT="2.5", DATABASE_CONNECT_TIMEOUT="2"
    )
    assert (options["pool"]["timeout"], options["connect_timeout"]) == (2.5, 2)
    assert database_options(DATABASE_URL=POSTGRES, DATABASE_POOL_SIZE="0")["connect_timeout"] == 3


def test_pooled_connections_are_checked_before_use() -> None:
    assert read_settings("DATABASES['default']['CONN_HEALTH_CHECKS']", DATABASE_URL=POSTGRES)


def test_pool_size_zero_turns_pooling_off() -> None:
    assert "pool" not in database_options(DATABASE_URL=POSTGRES, DATABASE_POOL_SIZE="0")


@pytest.mark.parametrize("url", ["sqlite:///db.sqlite3", ""])
def test_sqlite_has_no_pool(url: str) -> None:
    options = database_options(DATABASE_URL=url)
    assert "pool" not in options
    assert options["timeout"] == 20


def test_malloc_arenas_are_capped_at_two_unless_told() -> None:
    assert read_settings("MALLOC_ARENA_MAX") == 2
    assert read_settings("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX="0") == 0


def test_a_dotenv_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("STALE_CALL_SECONDS=77\nPUBLIC_URL=https://from-the-file.example\n")
    read = read_settings(
        "PUBLIC_URL + ' ' + str(s.STALE_CALL_SECONDS)",
        ENV_FILE=str(env_file),
        PUBLIC_URL="https://from-the-environment.example",
    )
    assert read == "https://from-the-environment.example 77"


def test_manage_py_reads_the_same_dotenv_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DEEPGRAM_API_KEY=key-from-the-file\n")
    script = "from django.conf import settings; print(settings.DEEPGRAM_API_KEY)"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEEPGRAM_API_KEY", "DJANGO_SETTINGS_MODULE"}
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=PROJECT_DIR,
        env={**env, "ENV_FILE": str(env_file), "DEBUG": "true"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "key-from-the-file"


def test_a_relative_speech_cache_folder_is_in_the_project_folder() -> None:
    location = read_settings("CACHES['speech']['LOCATION']", SPEECH_CACHE_DIR="cache-here")
    assert location == str(PROJECT_DIR / "cache-here")
