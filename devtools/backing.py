"""The PostgreSQL and Redis servers on 127.0.0.1 that tests and the benchmark use: whether they
answer, and throwaway databases."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis
from psycopg import sql

POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
_CONNECT_TIMEOUT = 3


def postgres_missing(url: str = POSTGRES_URL) -> str | None:
    """Return why PostgreSQL cannot be used, or None when it answers."""
    try:
        with psycopg.connect(url, connect_timeout=_CONNECT_TIMEOUT) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {url} is not reachable ({str(exc).strip() or type(exc).__name__})"
    return None


def redis_missing(url: str = REDIS_URL) -> str | None:
    """Return why Redis cannot be used, or None when it answers."""
    client = redis.Redis.from_url(url, socket_connect_timeout=_CONNECT_TIMEOUT)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis at {url} is not reachable ({exc})"
    finally:
        client.close()
    return None


def database_url(name: str, server_url: str = POSTGRES_URL) -> str:
    """Return the URL of database `name` on the server of `server_url`."""
    return server_url.rsplit("/", 1)[0] + "/" + name


@contextmanager
def scratch_database(prefix: str = "voicebridge", server_url: str = POSTGRES_URL) -> Iterator[str]:
    """Create an empty PostgreSQL database for the block and drop it afterwards."""
    # A random name keeps concurrent runs on one server apart.
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(name, server_url)
    finally:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def scratch_redis(server_url: str = REDIS_URL) -> Iterator[str]:
    """Lend an empty numbered Redis database for the block and empty it afterwards."""
    # Speech, presence and channels from another run, or another test at the same time, must
    # not leak in: the shared server keeps them between runs.
    base = server_url.rsplit("/", 1)[0]
    for number in random.sample(range(1, 16), 15):
        url = f"{base}/{number}"
        client = redis.Redis.from_url(url, socket_connect_timeout=_CONNECT_TIMEOUT)
        try:
            if client.dbsize() == 0:
                break
        finally:
            client.close()
    else:
        raise RuntimeError(f"no empty database on the Redis server at {base}")
    try:
        yield url
    finally:
        client = redis.Redis.from_url(url, socket_connect_timeout=_CONNECT_TIMEOUT)
        try:
            client.flushdb()
        finally:
            client.close()
