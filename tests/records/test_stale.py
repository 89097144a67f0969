"""Calls a stopped server left in progress are finished by the command and the first webhook."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from calls.models import Call
from calls.records import stale

pytestmark = pytest.mark.django_db


def in_progress(call_sid: str, age: timedelta) -> Call:
    return Call.objects.create(call_sid=call_sid, started_at=timezone.now() - age)


def test_command_finishes_only_calls_older_than_any_live_call(settings: Settings) -> None:
    settings.STALE_CALL_SECONDS = 3600
    old = in_progress("CAold", timedelta(hours=5))
    recent = in_progress("CAlive", timedelta(minutes=2))
    out = StringIO()
    call_command("finish_stale_calls", stdout=out)
    assert "Finished 1 stale call(s)." in out.getvalue()
    old.refresh_from_db()
    recent.refresh_from_db()
    assert old.status == Call.Status.FAILED
    assert old.ended_at is not None
    assert "stopped before the call ended" in old.error
    assert recent.status == Call.Status.IN_PROGRESS


def test_command_older_than_zero_finishes_everything_in_progress() -> None:
    in_progress("CAa", timedelta(seconds=1))
    done = Call.objects.create(
        call_sid="CAb", started_at=timezone.now(), status=Call.Status.COMPLETED
    )
    call_command("finish_stale_calls", "--older-than", "0", stdout=StringIO())
    assert Call.objects.get(call_sid="CAa").status == Call.Status.FAILED
    done.refresh_from_db()
    assert done.status == Call.Status.COMPLETED


def test_first_webhook_of_a_process_sweeps_once(
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
) -> None:
    settings.STALE_CALL_SECONDS = 60
    monkeypatch.setattr(stale, "_swept", type(stale._swept)())
    in_progress("CAold", timedelta(hours=1))
    client.post("/voice", {"CallSid": "CAnew"})
    assert Call.objects.get(call_sid="CAold").status == Call.Status.FAILED
    in_progress("CAold2", timedelta(hours=1))
    client.post("/voice", {"CallSid": "CAnew2"})
    assert Call.objects.get(call_sid="CAold2").status == Call.Status.IN_PROGRESS


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_the_sweep_finishes_calls_no_worker_holds() -> None:
    from asgiref.sync import sync_to_async

    from calls.live import presence

    create = sync_to_async(in_progress)
    abandoned = await create("CAabandoned", timedelta(minutes=3))
    held = await create("CAheld", timedelta(minutes=3))
    young = await create("CAyoung", timedelta(seconds=5))
    await presence.announce("CAheld", "specific.test!held")
    try:
        assert await sync_to_async(stale.finish_abandoned_calls)() == 1
    finally:
        await presence.withdraw("CAheld")
    for call in (abandoned, held, young):
        await call.arefresh_from_db()
    assert abandoned.status == Call.Status.FAILED
    assert abandoned.error == stale.STOPPED_ERROR
    assert (held.status, young.status) == (Call.Status.IN_PROGRESS, Call.Status.IN_PROGRESS)
