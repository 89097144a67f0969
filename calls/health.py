"""Probes for load balancers: /healthz (the process answers) and /readyz (it can take calls)."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from calls.server import drain

logger = logging.getLogger(__name__)


class NotReady(Exception):
    """A dependency answered, but not as a working one does."""


@dataclass(frozen=True)
class Check:
    """One thing the process needs to take calls, and how to ask it."""

    name: str
    ask: Callable[[], Awaitable[None]]


# Blocking probes run on threads of their own, one at a time per check: a hung database holds
# one thread, not one per probe, and Django's single sync thread (the webhooks') never waits on
# it. Daemon threads, so a probe still hung does not hold up the process' exit.
_running: dict[str, Future[None]] = {}


def _in_thread(name: str, probe: Callable[[], None]) -> Awaitable[None]:
    future = _running.get(name)
    if future is None or future.done():
        future = Future()
        # Running, so a caller that stops waiting cannot cancel it under the thread.
        future.set_running_or_notify_cancel()
        _running[name] = future
        threading.Thread(
            target=_settle, args=(future, probe), name=f"readyz-{name}", daemon=True
        ).start()
    return asyncio.wrap_future(future)


def _settle(future: Future[None], probe: Callable[[], None]) -> None:
    try:
        probe()
    except Exception as error:
        future.set_exception(error)
    else:
        future.set_result(None)


def _select_one() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def _set_and_get() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=10)
    if cache.get(key) != "ok":
        raise NotReady("the cache did not return what was just set")
    cache.delete(key)


async def _database() -> None:
    await _in_thread("database", _select_one)


async def _cache() -> None:
    await _in_thread("cache", _set_and_get)


async def _channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise NotReady("no channel layer is configured")
    channel = await layer.new_channel("readyz.")
    await layer.send(channel, {"type": "readyz.ping"})
    if (await layer.receive(channel)).get("type") != "readyz.ping":
        raise NotReady("the channel layer did not return what was just sent")


CHECKS = (
    Check("database", _database),
    Check("cache", _cache),
    Check("channel_layer", _channel_layer),
)


async def _outcome(check: Check, timeout: float) -> str:
    try:
        await asyncio.wait_for(check.ask(), timeout)
    except TimeoutError:
        logger.warning("readiness: %s gave no answer within %g s", check.name, timeout)
        return "timed out"
    except Exception as error:  # any failure of a dependency means not ready, never a 500
        logger.warning("readiness: %s failed: %s: %s", check.name, type(error).__name__, error)
        return "failed"
    return "ok"


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    """Answer that the process is up, asking nothing else."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
async def readyz(request: HttpRequest) -> JsonResponse:
    """Answer 200 when every dependency answers and the process is not draining, else 503."""
    timeout = settings.READINESS_CHECK_TIMEOUT
    outcomes = await asyncio.gather(*(_outcome(check, timeout) for check in CHECKS))
    checks = {check.name: outcome for check, outcome in zip(CHECKS, outcomes, strict=True)}
    checks["accepting_calls"] = "draining" if drain.draining() else "ok"
    failing = [name for name, outcome in checks.items() if outcome != "ok"]
    if failing:
        return JsonResponse(
            {"status": "unavailable", "failing": failing, "checks": checks}, status=503
        )
    return JsonResponse({"status": "ok", "checks": checks})
