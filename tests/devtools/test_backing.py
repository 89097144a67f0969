"""The local PostgreSQL and Redis probes, and throwaway databases."""

from __future__ import annotations

import psycopg
import pytest

from devtools import backing
from devtools.devserver import free_port


def test_absent_servers_are_reported_with_a_reason() -> None:
    port = free_port()
    reason = backing.postgres_missing(f"postgres://postgres@127.0.0.1:{port}/postgres")
    assert reason is not None and "PostgreSQL" in reason
    reason = backing.redis_missing(f"redis://127.0.0.1:{port}/0")
    assert reason is not None and "Redis" in reason


def test_database_url_names_another_database() -> None:
    assert backing.database_url("x_1", "postgres://u@h:5/postgres") == "postgres://u@h:5/x_1"


def test_a_scratch_database_exists_only_inside_the_block() -> None:
    reason = backing.postgres_missing()
    if reason is not None:
        pytest.skip(reason)
    with backing.scratch_database("voicebridge_probe") as url, psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None
        assert row[0] == url.rsplit("/")[-1]
    with psycopg.connect(backing.POSTGRES_URL) as conn:
        name = url.rsplit("/")[-1]
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert found is None
