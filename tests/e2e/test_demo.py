"""`make demo`: a server beside the fake Deepgram answers a call that is heard, with no key."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.devserver import PROJECT_DIR, free_port

pytestmark = pytest.mark.e2e


def test_the_demo_places_a_call_that_is_heard(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "devtools.demo", "--port", str(free_port()), "--dir", str(tmp_path)],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop" in line:
                break
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.communicate(timeout=30)
    output = "".join(lines)
    assert "The call was answered and the caller heard" in output, output
    assert "test tones" in output
    assert "/admin/" in output
