"""The malloc arena cap: threads share the arenas it allows."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from calls.server.malloc import cap_arenas
from devtools.devserver import PROJECT_DIR

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

# Four threads alive together each allocate blocks malloc serves, then glibc lists its arenas.
SCRIPT = """
import ctypes, sys, threading
from calls.server.malloc import cap_arenas
if sys.argv[1] != "0":
    assert cap_arenas(int(sys.argv[1]))
together = threading.Barrier(4)
def work():
    together.wait()
    blocks = [bytearray(4096) for _ in range(100)]
    together.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL(None).malloc_stats()
"""


def arenas_used(limit: int) -> int:
    """Run the threads in a fresh interpreter with `limit` arenas (0: no cap); count arenas."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(limit)],
        cwd=PROJECT_DIR,
        env={k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stderr.count("Arena ")


@glibc_only
def test_threads_share_the_capped_arenas() -> None:
    assert arenas_used(0) >= 4
    assert arenas_used(1) == 1


def test_zero_leaves_the_default() -> None:
    assert cap_arenas(0) is False
