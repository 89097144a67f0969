"""One phase of callers: when they arrive, which numbers they call, and what they measured."""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from typing import cast

from bench import procstat
from bench.callers import CallerPool, CallResult, Plan
from bench.report import spread


@dataclass
class Phase:
    """What the callers of one phase measured, with the server samples taken meanwhile."""

    name: str
    calls: int
    ttfa: list[float]
    frames_in_window: int
    errors: list[str]
    max_tick_lag: float
    client_cpu: float
    results: list[CallResult] = field(default_factory=list)
    samples: dict[str, procstat.Sample] = field(default_factory=dict)

    @property
    def setups(self) -> list[float]:
        """Each call's webhook-to-`start` seconds, where it was dialled on arrival."""
        return [c.setup for c in self.results if c.setup is not None]


def progress(message: str) -> None:
    """Say on stderr how the run goes."""
    print(message, file=sys.stderr, flush=True)


def run_phase(
    pool: CallerPool,
    name: str,
    plan: Plan,
    *,
    pid: int | None = None,
    at: dict[str, float] | None = None,
    expect_audio: bool = True,
) -> Phase:
    """Play one phase and gather what every caller process measured."""
    progress(f"  {name} ...")
    started = time.monotonic()
    workers, samples = pool.run(
        plan, at=at, sample=(lambda: procstat.sample(pid)) if pid is not None else None
    )
    calls = [c for w in workers for c in w.calls]
    errors = [c.error for c in calls if c.error]
    if expect_audio:
        errors += ["no audio" for c in calls if c.ttfa is None and not c.error]
    phase = Phase(
        name=name,
        calls=len(calls),
        ttfa=[c.ttfa for c in calls if c.ttfa is not None],
        frames_in_window=sum(c.frames_in_window for c in calls),
        errors=errors,
        max_tick_lag=max(w.max_tick_lag for w in workers),
        client_cpu=sum(w.cpu_seconds for w in workers),
        results=calls,
        # The pool's sampler here is procstat.sample.
        samples=cast(dict[str, procstat.Sample], samples),
    )
    summary = f"TTFA ms p50/p95/p99/max {spread(phase.ttfa)}" if expect_audio else ""
    problems = f", {len(errors)} errors (first: {errors[0]})" if errors else ""
    progress(f"    {time.monotonic() - started:4.1f} s {summary}{problems}")
    return phase


def together(calls: int) -> tuple[float, ...]:
    """Every caller sends `start` at the same moment."""
    return (0.0,) * calls


def arriving(calls: int, rate: float, *, seed: int) -> tuple[float, ...]:
    """Poisson arrivals of `calls` calls at `rate` a second: given their count, a Poisson
    process's arrival times are uniform over its span."""
    if calls == 1:
        return (0.0,)
    shuffle = random.Random(seed)
    return tuple(sorted(shuffle.uniform(0.0, calls / rate) for _ in range(calls)))


def one_at_a_time(calls: int, gap: float) -> tuple[float, ...]:
    """Calls one after another, `gap` seconds apart."""
    return tuple(gap * i for i in range(calls))


def numbers(phase: int, calls: int) -> tuple[str, ...]:
    """Distinct called numbers (E.164) for the calls of one phase."""
    return tuple(f"+1555{phase:02d}{i:05d}" for i in range(calls))
