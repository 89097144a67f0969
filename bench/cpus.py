"""A core for the server under test, the others for the load: callers and the fake Deepgram.

On a small machine the callers' bursts would otherwise take the core the server needs to read
them, and their CPU would be counted as the server's latency.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def split() -> tuple[frozenset[int], frozenset[int]] | None:
    """Return (server CPUs, load CPUs), or None when there is only one CPU to use."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None
    return frozenset(usable[-1:]), frozenset(usable[:-1])


def pin(pid: int, cpus: frozenset[int]) -> None:
    """Keep every thread of process `pid` on `cpus` (threads it starts later inherit it)."""
    tasks = Path(f"/proc/{pid}/task")
    threads = [int(t.name) for t in tasks.iterdir()] if tasks.exists() else [pid]
    for thread in threads:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(thread, cpus)
