"""CPU time and memory of a process on this host, read from /proc."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """A process's CPU seconds so far (user + system), its resident and peak resident bytes."""

    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int


def sample(pid: int) -> Sample:
    """Read one Sample of process `pid`."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces; the fields after it are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    memory: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            memory[name] = int(value.split()[0]) * 1024
    return Sample(cpu, memory["VmRSS"], memory["VmHWM"])
