"""The benchmark's verdicts: the phases' figures turned into the table's rows and the JSON's."""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Callable
from typing import cast

from bench import procstat
from bench.long_calls import long_call_rows
from bench.phases import Phase
from bench.relay_floor import TEXT_PREFIX
from bench.report import Row, Spread, spread

KIB = 1024
MIB = 1024 * 1024


def assess(
    args: argparse.Namespace, phases: dict[str, Phase], checks: dict[str, object]
) -> tuple[list[Row], dict[str, object]]:
    """Turn the phases into the table's rows and the JSON's headline figures."""
    rows: list[Row] = []
    figures: dict[str, object] = {}
    for part in (
        setup_rows,
        cached_rows,
        uncached_rows,
        deepgram_rows,
        restart_rows,
        media_rows,
        memory_rows,
        other_rows,
    ):
        part(args, phases, checks, rows, figures)
    return rows, figures


def ratio(ours: float, floor: float) -> float:
    """ours / floor, infinite when the floor measured nothing."""
    return ours / floor if floor else math.inf


def server_cpu(phase: Phase, first: str, last: str) -> float:
    """Server CPU seconds between two of a phase's samples."""
    return phase.samples[last].cpu_seconds - phase.samples[first].cpu_seconds


def setup_rows(
    args: argparse.Namespace,
    phases: dict[str, Phase],
    checks: dict[str, object],
    rows: list[Row],
    figures: dict[str, object],
) -> None:
    """Server CPU per call set up (webhook, handshake, `start`, greeting, record)."""
    if "setup" in args.skip:
        return
    per_call = {}
    for target in ("voicebridge", "held"):
        runs = [p for name, p in phases.items() if name.startswith(f"setup-{target}-")]
        per_call[target] = sum(server_cpu(p, "start", "end") for p in runs) / sum(
            p.calls for p in runs
        )
    times = ratio(per_call["voicebridge"], per_call["held"])
    rows.append(
        Row(
            f"server CPU per call set-up, {args.setup_calls} calls at {args.rate:.0f}/s",
            f"{per_call['voicebridge'] * 1000:.2f} ms; floor {per_call['held'] * 1000:.2f} ms;"
            f" ratio {times:.2f}x",
            "<= 2.5x floor",
            times <= 2.5,
        )
    )
    setups = {}
    for target in ("voicebridge", "held"):
        runs = [p for name, p in phases.items() if name.startswith(f"setup-{target}-")]
        setups[target] = spread([s for p in runs for s in p.setups])
    rows.append(
        Row(
            "  webhook + handshake, p50 p95 p99 max (ms)",
            f"{setups['voicebridge']}; floor {setups['held'].p50:.1f} {setups['held'].p99:.1f}",
        )
    )
    figures["setup_cpu_ms"] = {k: v * 1000 for k, v in per_call.items()}
    figures["setup_cpu_ratio"] = times
    figures["setup_latency_ms"] = setups


def cached_rows(
    args: argparse.Namespace,
    phases: dict[str, Phase],
    checks: dict[str, object],
    rows: list[Row],
    figures: dict[str, object],
) -> None:
    """First audio of a greeting already rendered, beside the cached-greeting floor."""
    largest = max(args.calls)
    for n in args.calls:
        ours, floor = phases[f"cached-{n}"], phases[f"held-{n}"]
        cached, held = spread(ours.ttfa), spread(floor.ttfa)
        bound = 2 * held.p99 + 5
        target = n == largest
        rows.append(
            Row(
                f"TTFA cached, {n} calls at {args.cached_rate:.0f}/s: p50 p95 p99 max (ms)",
                f"{cached}{unheard(ours)}",
                f"p99 <= 2x floor + 5 = {bound:.1f}" if target else "",
                (cached.p99 <= bound and not unheard(ours)) if target else None,
            )
        )
        rows.append(
            Row(
                f"  same for the cached-greeting floor (bare app), {n} calls",
                f"{held}{unheard(floor)}",
            )
        )
        figures[f"ttfa_cached_{n}"] = cached
        figures[f"floor_ttfa_cached_{n}"] = held
    cpu = {
        name: server_cpu(phases[f"{name}-{largest}"], "start", "all_in")
        for name in ("cached", "held")
    }
    rows.append(
        Row(
            f"server CPU while {largest} cached callers arrive",
            f"{cpu['cached']:.2f} s; cached floor {cpu['held']:.2f} s;"
            f" ratio {ratio(cpu['cached'], cpu['held']):.2f}x",
        )
    )
    figures["cpu_seconds_cached_arrivals"] = {"voicebridge": cpu["cached"], "floor": cpu["held"]}
    if "burst" not in args.skip:
        burst, burst_floor = (spread(phases[f"burst-{t}"].ttfa) for t in ("voicebridge", "held"))
        rows.append(
            Row(
                f"TTFA cached, {largest} calls dialled ahead, same-ms start (ms)",
                f"{burst}; floor p99 {burst_floor.p99:.1f}",
            )
        )
        figures["ttfa_cached_burst"] = {"voicebridge": burst, "floor": burst_floor}


def unheard(phase: Phase) -> str:
    """How many of a phase's calls heard no audio before hanging up, if any did not."""
    missing = phase.calls - len(phase.ttfa)
    return f"; {missing} heard none" if missing else ""


def first_bytes(stats: object, key: Callable[[str], str | None]) -> dict[str, float]:
    """The fake's own seconds to first byte per request, by `key(text)` where it is not None."""
    assert isinstance(stats, dict)
    found = {}
    for (_, text), seconds in zip(stats["texts"], stats["first_byte_seconds"], strict=True):
        name = key(text)
        if name is not None and seconds is not None:
            found[name] = float(seconds)
    return found


def relay_number(text: str) -> str | None:
    """The called number a first-audio floor request was for."""
    return text.split()[2] if text.startswith(TEXT_PREFIX) else None


def overheads(phase: Phase, first_byte: dict[str, float]) -> Spread:
    """Each call's first audio minus Deepgram's first byte of its own request."""
    return spread(
        [
            c.ttfa - first_byte[c.number]
            for c in phase.results
            if c.ttfa is not None and c.number in first_byte
        ]
    )


def uncached_rows(
    args: argparse.Namespace,
    phases: dict[str, Phase],
    checks: dict[str, object],
    rows: list[Row],
    figures: dict[str, object],
) -> None:
    """First audio of greetings no call had before, less Deepgram's part, beside the relay."""
    middle = args.uncached[len(args.uncached) // 2]
    for n in args.uncached:
        uncached = spread(phases[f"uncached-{n}"].ttfa)
        rows.append(Row(f"TTFA uncached, {n} calls: p50 p95 p99 max (ms)", str(uncached)))
        figures[f"ttfa_uncached_{n}"] = uncached
    for n in args.uncached:
        phase = phases[f"uncached-{n}"]
        # Each call's greeting text names its number's greeting: the fake's record of that
        # text's request is Deepgram's part of the call's first audio.
        texts = checks[f"greeting_texts-{n}"]
        assert isinstance(texts, dict)
        number_of = {text: number for number, text in texts.items()}
        ours = overheads(phase, first_bytes(checks[f"deepgram_texts-{n}"], number_of.get))
        relayed = overheads(
            phases[f"relay-{n}"], first_bytes(checks[f"relay_texts-{n}"], relay_number)
        )
        if n == 1:
            label, target, ok = "one call at a time", "p50 <= floor + 2", None
            bound = relayed.p50 + 2
        else:
            label, target, ok = f"{n} calls at {args.rate:.0f}/s", "p50 <= floor + 3", None
            bound = relayed.p50 + 3
        if n == 1 or n == middle:
            ok = ours.p50 <= bound and not unheard(phase)
            target = f"{target} = {bound:.1f}"
        else:
            target = ""
        rows.append(
            Row(
                f"TTFA - Deepgram's first byte, uncached, {label} (ms)",
                f"{ours}{unheard(phase)}",
                target,
                ok,
            )
        )
        rows.append(Row(f"  same for the first-audio floor (bare relay), {n} calls", str(relayed)))
        figures[f"server_overhead_uncached_{n}"] = ours
        figures[f"floor_overhead_uncached_{n}"] = relayed
    first_ours, first_relay = (phases[name].ttfa for name in ("warm-up", "relay-warm-up"))
    if first_ours and first_relay:
        ours_ms, relay_ms = first_ours[0] * 1000, first_relay[0] * 1000
        rows.append(
            Row(
                "TTFA uncached, first call after the server starts (ms)",
                f"{ours_ms:.1f}; first-audio floor {relay_ms:.1f}",
            )
        )
        figures["ttfa_first_call_ms"] = {"voicebridge": ours_ms, "floor": relay_ms}


def deepgram_rows(
    args: argparse.Namespace,
    phases: dict[str, Phase],
    checks: dict[str, object],
    rows: list[Row],
    figures: dict[str, object],
) -> None:
    """One Deepgram request per (voice, text), on connections kept and reused."""
    stats = checks["deepgram"]
    assert isinstance(stats, dict)
    per_text = Counter((model, text) for model, text in stats["texts"])
    most = max(per_text.values(), default=0)
    control = checks.get("control")
    across = ""
    if isinstance(control, dict) and "most_requests_per_text" in control:
        most = max(most, control["most_requests_per_text"])
        across = "; across two workers too"
    rows.append(
        Row(
            "Deepgram requests per (voice, text)",
            f"{stats['requests'] / max(1, len(per_text)):.2f} "
            f"(max {most}; {len(per_text)} texts{across})",
            "1",
            most == 1,
        )
    )
    opened = stats["speak_connections"]
    # At most one connection per request in flight at once, and fewer than the requests.
    limit = max(args.uncached) + 2
    rows.append(
        Row(
            "Deepgram connections opened by the server",
            f"{opened} for {stats['requests']} requests",
            f"reused: <= {limit}",
            opened <= limit and opened < stats["requests"],
        )
    )
    figures["deepgram"] = {"requests": stats["requests"], "connections": opened, "most": most}


def restart_rows(
    args: argparse.Namespace,
    phases: dict[str, Phase],
    checks: dict[str, object],
    rows: list[Row],
    figures: dict[str, object],
) -> None:
    """Calls after an admin edit, a restart, and with Deepgram down: all from the cache."""
    if "admin" in args.skip:
        return
    for key, label in (
        ("after_admin_edit", "first call after an admin edit"),
        ("after_restart", "first call after a restart"),
        ("deepgram_down", "a call while Deepgram is down"),
    ):
        # Each of these checks holds Voicebridge.last_call()'s answer.
        status, from_cache = cast(tuple[str, bool | None], checks[key])
        phase = phases[key.replace("_", "-")]
        ttfa = f", TTFA {phase.ttfa[0] * 1000:.1f} ms" if phase.ttfa else ", no audio"
        rows.append(
            Row(label, f"{status}, from cache: {from_cache}{ttfa}", "from cache", bool(from_cache))
        )
        figures[key] = {"status": status, "from_cache": from_cache}


def media_rows(
    args: argparse.Namespace,
    phases: dict[str, Phase],
    checks: dict[str, object],
    rows: list[Row],
    figures: dict[str, object],
) -> None:
    """Server CPU per caller media frame, beside the floor that drops them."""
    if "media" in args.skip:
        return
    per_frame = {}
    for target in ("voicebridge", "floor"):
        runs = [p for name, p in phases.items() if name.startswith(f"media-{target}-")]
        frames = sum(p.frames_in_window for p in runs)
        cpu = sum(server_cpu(p, "window_start", "window_end") for p in runs)
        per_frame[target] = cpu / frames if frames else math.nan
    times = ratio(per_frame["voicebridge"], per_frame["floor"])
    rows.append(
        Row(
            f"server CPU per caller media frame ({args.media_calls} calls)",
            f"{per_frame['voicebridge'] * 1e6:.1f} us; floor {per_frame['floor'] * 1e6:.1f} us;"
            f" ratio {times:.2f}x",
            "<= 1.15x floor",
            times <= 1.15,
        )
    )
    figures["cpu_per_media_frame_us"] = {k: v * 1e6 for k, v in per_frame.items()}
    figures["cpu_ratio"] = times


def memory_rows(
    args: argparse.Namespace,
    phases: dict[str, Phase],
    checks: dict[str, object],
    rows: list[Row],
    figures: dict[str, object],
) -> None:
    """Server RSS per connected call, from the cached phases' busiest moments."""
    baseline, peak = checks["rss_baseline"], checks["peak"]
    assert isinstance(baseline, procstat.Sample) and isinstance(peak, procstat.Sample)
    largest = max(args.calls)
    busiest = phases[f"cached-{largest}"].samples["all_in"]
    per_call = (busiest.rss_bytes - baseline.rss_bytes) / largest
    # The first calls also start threads and allocator arenas once for the process; the growth
    # from the second-largest to the largest count is the cost of one more call.
    smaller = sorted(args.calls)[-2] if len(args.calls) > 1 else 0
    fewer = phases[f"cached-{smaller}"].samples["all_in"] if smaller else baseline
    marginal = (busiest.rss_bytes - fewer.rss_bytes) / (largest - smaller)
    rows.append(Row("peak server RSS", f"{peak.peak_rss_bytes / MIB:.1f} MiB"))
    rows.append(
        Row(
            f"server RSS per connected call, {smaller} to {largest} calls",
            f"{marginal / KIB:.1f} KiB",
            "<= 64 KiB",
            marginal <= 64 * KIB,
        )
    )
    rows.append(
        Row(f"server RSS over the baseline per call, {largest} calls", f"{per_call / KIB:.1f} KiB")
    )
    figures["rss"] = {
        "baseline_bytes": baseline.rss_bytes,
        "peak_bytes": peak.peak_rss_bytes,
        "per_call_bytes": per_call,
        "marginal_per_call_bytes": marginal,
    }


def other_rows(
    args: argparse.Namespace,
    phases: dict[str, Phase],
    checks: dict[str, object],
    rows: list[Row],
    figures: dict[str, object],
) -> None:
    """The control round trip, the long calls, and how late the callers' own clock ran."""
    control = checks.get("control")
    if isinstance(control, dict):
        rows.extend(control_rows(control))
        figures["control_round_trip"] = control
    long_calls = checks.get("long_calls")
    if isinstance(long_calls, dict):
        rows.extend(long_call_rows(long_calls))
        figures["long_calls"] = long_calls
    lateness = max(p.max_tick_lag for p in phases.values()) * 1000
    rows.append(Row("callers' own clock, worst lateness (ms)", f"{lateness:.1f}"))
    figures["caller_max_lateness_ms"] = lateness


def control_rows(control: dict[str, object]) -> list[Row]:
    """Rows for the say-request-to-first-audio round trip across two workers."""
    if "skipped" in control:
        return [
            Row("control round trip (say API -> first audio)", f"skipped: {control['skipped']}")
        ]
    rows = []
    for route, label in (("same_worker", "the call's worker"), ("other_worker", "another worker")):
        figure = control[route]
        assert isinstance(figure, dict)
        measured = (
            f"{figure['p50_ms']:7.1f} {figure['p95_ms']:7.1f} {figure['max_ms']:7.1f}"
            f" ({figure['count']} calls, {figure['failed']} failed)"
            if figure["count"]
            else f"no call succeeded ({figure['failed']} failed)"
        )
        rows.append(Row(f"control say -> first audio via {label}: p50 p95 max (ms)", measured))
    return rows
