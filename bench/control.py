"""Live-call control round trip: from the `say` API request to the first audio of that speech at
the caller, with the request sent to the worker holding the call and to another worker."""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from devtools.cluster import Cluster, call_controlled_elsewhere, missing_servers, running_cluster
from devtools.fake_deepgram import running_in_thread


def run_control_roundtrip(*, calls: int = 10) -> dict[str, Any]:
    """Measure say → first audio over `calls` calls per route; return milliseconds and counts."""
    reason = missing_servers()
    if reason is not None:
        return {"skipped": reason}
    with (
        tempfile.TemporaryDirectory(prefix="voicebridge-bench-") as tmp,
        # No Deepgram latency: what is measured is voicebridge's own path.
        running_in_thread(ttfb=0.0) as deepgram,
        running_cluster(workers=2, deepgram_url=deepgram.url, tmp_dir=Path(tmp)) as cluster,
    ):
        result = asyncio.run(_measure(cluster, calls))
        said = Counter((request.model, request.text) for request in deepgram.requests)
        result["most_requests_per_text"] = max(said.values(), default=0)
        return result


async def _measure(cluster: Cluster, calls: int) -> dict[str, Any]:
    first, second = cluster.workers
    routes = {"other_worker": second.url, "same_worker": first.url}
    samples: dict[str, list[float]] = {route: [] for route in routes}
    failed: dict[str, int] = dict.fromkeys(routes, 0)
    # One call per route first, so neither side pays for connection set-up and imports.
    for url in routes.values():
        await call_controlled_elsewhere(first.url, url, cluster.api_token, "Warming up.")
    for n in range(calls):
        # Interleaved, so both routes see the same machine load.
        for route, url in routes.items():
            text = f"Your table number {n} is ready, via the {route.replace('_', ' ')}."
            call = await call_controlled_elsewhere(first.url, url, cluster.api_token, text)
            if call.report.errors or call.say_status != 202 or call.say_to_audio is None:
                failed[route] += 1
            else:
                samples[route].append(call.say_to_audio * 1000)
    result: dict[str, Any] = {route: _summary(samples[route], failed[route]) for route in routes}
    other, same = result["other_worker"], result["same_worker"]
    result.update(other)
    if other["count"] and same["count"]:
        result["other_over_same_p50"] = other["p50_ms"] / same["p50_ms"]
    return result


def _summary(values: list[float], failed: int) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "failed": failed}
    return {
        "count": len(ordered),
        "failed": failed,
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max_ms": ordered[-1],
    }


def _print_table(result: dict[str, Any]) -> None:
    if "skipped" in result:
        print(f"control round trip: SKIPPED ({result['skipped']})")
        return
    print("control round trip: say API request -> first audio of that speech at the caller")
    header = ("calls", "failed", "p50 ms", "p95 ms", "max ms")
    print(f"{'API request sent to':<22}" + "".join(f"{h:>8}" for h in header))
    for route, label in (("same_worker", "the call's worker"), ("other_worker", "another worker")):
        row = result[route]
        if row["count"]:
            print(
                f"{label:<22}{row['count']:>8}{row['failed']:>8}"
                f"{row['p50_ms']:>8.1f}{row['p95_ms']:>8.1f}{row['max_ms']:>8.1f}"
            )
        else:
            print(f"{label:<22}{0:>8}{row['failed']:>8}")
    if "other_over_same_p50" in result:
        print(f"another worker / the call's worker (p50): {result['other_over_same_p50']:.2f}x")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    _print_table(run_control_roundtrip(calls=count))
