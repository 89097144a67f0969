"""The benchmark's figures: percentiles, the printed table with its targets, the JSON file."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Spread:
    """Percentiles of a set of durations, in milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    def __str__(self) -> str:
        return f"{self.p50:7.1f} {self.p95:7.1f} {self.p99:7.1f} {self.max:7.1f}"


def spread(seconds: Sequence[float]) -> Spread:
    """Summarise durations given in seconds (nearest-rank percentiles)."""
    if not seconds:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    ordered = sorted(s * 1000 for s in seconds)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    return Spread(len(ordered), rank(50), rank(95), rank(99), ordered[-1])


@dataclass(frozen=True)
class Row:
    """One line of the table: what was measured, against which target, and whether it holds."""

    name: str
    measured: str
    target: str = ""
    ok: bool | None = None


def table(rows: Sequence[Row]) -> str:
    """Format rows as a fixed-width text table (also valid Markdown)."""
    head = Row("measure", "measured", "target", None)
    width_name = max(len(r.name) for r in [head, *rows])
    width_measured = max(len(r.measured) for r in [head, *rows])
    width_target = max(len(r.target) for r in [head, *rows])

    def line(row: Row, verdict: str) -> str:
        return (
            f"| {row.name:<{width_name}} | {row.measured:<{width_measured}} "
            f"| {row.target:<{width_target}} | {verdict:<4} |"
        )

    widths = (width_name, width_measured, width_target, 4)
    rule = "|".join(["", *("-" * (w + 2) for w in widths), ""])
    verdicts = {True: "ok", False: "MISS", None: ""}
    return "\n".join([line(head, "met"), rule, *(line(r, verdicts[r.ok]) for r in rows)])


def write_json(folder: Path, payload: dict[str, Any]) -> Path:
    """Write the run's figures to folder/bench-<UTC time>.json and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bench-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2, default=_plain) + "\n")
    return path


def _plain(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
