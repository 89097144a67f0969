"""`make bench` keeps working: a few calls through the whole benchmark, no timings asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.cluster import missing_servers
from devtools.devserver import PROJECT_DIR

pytestmark = pytest.mark.e2e


def test_a_small_benchmark_run_prints_its_table_and_writes_json(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--calls",
            "1",
            "2",
            "--uncached",
            "1",
            "2",
            "--rounds",
            "1",
            "--out",
            str(tmp_path),
        ]
        + ["--media-calls", "2", "--duration", "0.5", "--processes", "1", "--long-calls", "0"]
        + ["--setup-calls", "3", "--single", "2", "--control-calls", "0"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Deepgram requests per (voice, text)" in run.stdout
    assert "server CPU per call set-up" in run.stdout
    (written,) = tmp_path.glob("bench-*.json")
    figures = json.loads(written.read_text())["figures"]
    # The default greeting, a text of its own for each of the four uncached calls, the edit.
    assert figures["deepgram"]["requests"] == 6
    assert figures["deepgram"]["most"] == 1
    # Every uncached call was matched with its own Deepgram request, on both servers.
    assert figures["server_overhead_uncached_1"]["count"] == 2
    assert figures["server_overhead_uncached_2"]["count"] == 2
    assert figures["floor_overhead_uncached_2"]["count"] == 2
    # Every set-up call dialled on arrival, on both servers.
    assert figures["setup_latency_ms"]["voicebridge"]["count"] == 3
    assert figures["setup_latency_ms"]["held"]["count"] == 3
    # And both callers of the cached-greeting floor.
    assert figures["floor_ttfa_cached_2"]["count"] == 2
    assert figures["cpu_seconds_cached_arrivals"]["voicebridge"] >= 0
    # Both servers' first calls heard audio.
    assert set(figures["ttfa_first_call_ms"]) == {"voicebridge", "floor"}
    assert figures["after_admin_edit"]["from_cache"] is True
    assert figures["after_restart"]["from_cache"] is True
    assert figures["deepgram_down"]["from_cache"] is True


def test_the_long_calls_phase_alone_reports_kept_and_dropped_calls(tmp_path: Path) -> None:
    reason = missing_servers()
    if reason is not None:
        pytest.skip(reason)
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--phase", "long-calls", "--long-calls", "2"]
        + ["--hold", "3", "--out", str(tmp_path)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    (written,) = tmp_path.glob("bench-*.json")
    result = json.loads(written.read_text())["figures"]["long_calls"]
    assert result["calls"] == 2 and result["hold_seconds"] == 3
    assert result["kept"] + result["dropped"] == 2
    assert sum(result["dropped_close_codes"].values()) >= result["dropped"]
    assert result["say_to_audio_ms"]["count"] == result["kept"]
    assert run.returncode == (0 if result["kept"] == 2 else 1), run.stdout + run.stderr
    assert "long calls on Redis + PostgreSQL, two workers" in run.stdout
    assert "every call kept" in run.stdout
    # Nothing but the long calls ran.
    assert "Deepgram requests per (voice, text)" not in run.stdout
