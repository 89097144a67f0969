"""Two daphne workers sharing Redis and PostgreSQL: a call on one is spoken to through the other."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from django.conf import settings

from calls.records.queries import FALLBACK_GREETING
from calls.twilio.protocol import GREETING_MARK
from devtools.cluster import Cluster, call_controlled_elsewhere, missing_servers, running_cluster
from devtools.fake_deepgram import fake_audio, running_in_thread

pytestmark = pytest.mark.e2e

TABLE_READY = "Your table for two is ready at the window."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = missing_servers()
    if reason is not None:
        pytest.skip(f"two-worker test needs Redis and PostgreSQL: {reason}")
    with (
        running_in_thread(chunk_size=400) as deepgram,
        running_cluster(
            workers=2, deepgram_url=deepgram.url, tmp_dir=tmp_path_factory.mktemp("cluster")
        ) as running,
    ):
        yield running


async def test_say_through_one_worker_reaches_a_call_on_another(
    cluster: Cluster,
) -> None:
    running = cluster
    first, second = running.workers
    call = await call_controlled_elsewhere(first.url, second.url, running.api_token, TABLE_READY)
    report = call.report
    assert not report.errors, (report.errors, running.logs())
    assert (call.say_status, call.hangup_status) == (202, 202), running.logs()
    assert report.audio == (
        fake_audio(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)
        + fake_audio("aura-asteria-en", TABLE_READY)
    )
    assert report.marks == (GREETING_MARK, "say-1")
    # The server ended the stream, which ends the TwiML and with it the call.
    assert report.close_code == 1000
    assert call.say_to_audio is not None

    with psycopg.connect(running.database_url) as conn:
        row = conn.execute(
            "SELECT c.status, u.text, u.played FROM calls_call c"
            " JOIN calls_callutterance u ON u.call_id = c.id WHERE c.call_sid = %s",
            (report.call_sid,),
        ).fetchone()
    assert row is not None
    status, text, played = row
    assert (status, text, played) == ("completed", TABLE_READY, True)


async def test_a_burst_of_calls_beyond_postgresqls_connection_limit_is_answered(
    cluster: Cluster,
) -> None:
    # Each webhook runs in a thread of its own; unpooled, each would open a connection.
    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
        assert row is not None
        limit = int(row[0])
    burst = min(limit + 20, 400)
    worker = cluster.workers[0]

    async def answer(http: httpx.AsyncClient, n: int) -> int:
        form = {"CallSid": f"CA{n:032x}", "From": "+15550001111", "To": "+15550002222"}
        return (await http.post("/voice", data=form)).status_code

    limits = httpx.Limits(max_connections=burst)
    async with httpx.AsyncClient(base_url=worker.url, timeout=60, limits=limits) as http:
        statuses = await asyncio.gather(*(answer(http, n) for n in range(burst)))

    assert statuses.count(200) == burst, (sorted(set(statuses)), cluster.logs()[-3000:])
    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    (open_connections,) = row
    # Both workers' pools, at most (the workers read the same environment as this process).
    assert open_connections <= settings.DATABASE_POOL_SIZE * len(cluster.workers)
