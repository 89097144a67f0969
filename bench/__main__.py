"""`python -m bench`: simulated Twilio callers against daphne; prints how voicebridge fares."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import cpus, procstat
from bench.callers import CallerPool, Plan
from bench.control import run_control_roundtrip
from bench.long_calls import long_call_rows, run_long_calls
from bench.relay_floor import TEXT_PREFIX as RELAY_TEXT
from bench.report import Row, spread, table, write_json
from bench.servers import (
    CACHED_FLOOR_APPLICATION,
    fake_deepgram,
    floor,
    prepare_voicebridge,
    relay_floor,
    save_greeting_in_admin,
)

RESULTS = Path(__file__).resolve().parent / "results"
KIB = 1024
MIB = 1024 * 1024


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
    samples: dict[str, procstat.Sample] = field(default_factory=dict)


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
        samples=samples,  # type: ignore[arg-type]
    )
    summary = f"TTFA ms p50/p95/p99/max {spread(phase.ttfa)}" if expect_audio else ""
    problems = f", {len(errors)} errors (first: {errors[0]})" if errors else ""
    progress(f"    {time.monotonic() - started:4.1f} s {summary}{problems}")
    return phase


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def together(calls: int) -> tuple[float, ...]:
    """Every caller sends `start` at the same moment."""
    return (0.0,) * calls


def arriving(calls: int, ramp: float) -> tuple[float, ...]:
    """Callers send `start` evenly spread over `ramp` seconds."""
    return tuple(ramp * i / calls for i in range(calls))


def greeting_text(tag: str) -> str:
    return (
        f"Thank you for calling the bakery, reference {tag}. Fresh bread comes out at seven. "
        "Press any key to skip this message."
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Start a fake Deepgram and voicebridge under daphne on 127.0.0.1, play "
        "simulated Twilio callers against it, print a table and write it as JSON.",
    )
    parser.add_argument(
        "--calls",
        type=int,
        nargs="+",
        default=[1, 50, 200],
        help="concurrent call counts to measure time to first audio at (default: 1 50 200)",
    )
    parser.add_argument(
        "--ttfb",
        type=float,
        default=0.15,
        help="fake Deepgram's seconds to first byte (default: %(default)s)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=4.0,
        help="fake Deepgram's streaming speed, a multiple of real time (default: %(default)s)",
    )
    parser.add_argument(
        "--media-calls",
        type=int,
        default=100,
        help="calls streaming caller audio while server CPU is measured (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=4.0,
        help="seconds of caller audio per CPU measurement (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="alternating voicebridge/floor CPU measurements (default: %(default)s)",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=0.01,
        help="seconds between cached callers' starts, so media is already flowing "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="caller processes placing the calls (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small smoke run: 1 and 5 calls, 10 media calls for 1 s, one round, "
        "2 long calls held 5 s",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the servers' logs and database afterwards"
    )
    parser.add_argument(
        "--control-calls",
        type=int,
        default=10,
        help="calls per route for the live-call control round trip across two workers on "
        "Redis and PostgreSQL; 0 skips it (default: %(default)s)",
    )
    parser.add_argument(
        "--phase",
        choices=("all", "long-calls"),
        default="all",
        help="run every phase, or only the long calls on two workers (default: %(default)s)",
    )
    parser.add_argument(
        "--long-calls",
        type=int,
        default=20,
        help="calls held open across two workers on Redis and PostgreSQL; 0 skips them "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long each long call stays connected before its say (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for the JSON (default: bench/results)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.media_calls, args.duration, args.rounds = [1, 5], 10, 1.0, 1
        args.control_calls = min(args.control_calls, 2)
        args.long_calls, args.hold = min(args.long_calls, 2), min(args.hold, 5.0)
    args.calls = sorted(set(args.calls))
    if min(args.calls) < 1 or args.media_calls < 1 or args.duration <= 0 or args.rounds < 1:
        parser.error("call counts, --media-calls, --duration and --rounds must be positive")
    if args.long_calls < 0 or args.hold <= 0:
        parser.error("--long-calls must not be negative and --hold must be positive")
    if args.phase == "long-calls" and args.long_calls < 1:
        parser.error("--phase long-calls needs --long-calls of at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase == "long-calls":
        return main_long_calls(args)
    run = secrets.token_hex(3)
    ttfb = args.ttfb
    phases: dict[str, Phase] = {}
    checks: dict[str, object] = {}
    progress(
        f"voicebridge benchmark {run}: fake Deepgram ttfb {ttfb * 1000:.0f} ms, "
        f"{args.speed}x real time; {args.processes} caller processes"
    )
    pool = CallerPool(args.processes)
    cores = cpus.split()
    if cores is not None:
        server_cpus, load_cpus = cores
        progress(
            f"server on CPU {sorted(server_cpus)}, callers and fake Deepgram on {sorted(load_cpus)}"
        )
        for pid in [os.getpid(), *pool.pids]:
            cpus.pin(pid, load_cpus)
    workdir = Path(tempfile.mkdtemp(prefix="voicebridge-bench-"))
    if args.keep:
        progress(f"server logs and database in {workdir}")
    try:
        # The first-audio floor asks a fake of its own: voicebridge's request counts stay its own.
        with (
            fake_deepgram(ttfb, args.speed) as deepgram,
            fake_deepgram(ttfb, args.speed) as relay_deepgram,
        ):
            if cores is not None:
                cpus.pin(deepgram.process.pid, load_cpus)
                cpus.pin(relay_deepgram.process.pid, load_cpus)
            progress("preparing the database ...")
            voicebridge = prepare_voicebridge(workdir, deepgram.url)
            with (
                voicebridge.running() as server,
                floor(workdir) as bare,
                relay_floor(workdir, relay_deepgram.url) as relay,
                floor(workdir, CACHED_FLOOR_APPLICATION) as held,
            ):
                pid = server.process.pid
                if cores is not None:
                    for process in (server.process, bare.process, relay.process, held.process):
                        cpus.pin(process.pid, server_cpus)
                url = server.url
                warm = run_phase(pool, "warm-up call", Plan(url, (0.0,), hang_up_at=ttfb + 1.0))
                phases["warm-up"] = warm
                phases["relay-warm-up"] = run_phase(
                    pool,
                    "first-audio floor, warm-up call",
                    Plan(relay.url, (0.0,), hang_up_at=ttfb + 1.0, webhook=False),
                )
                checks["rss_baseline"] = procstat.sample(pid)
                for n in args.calls:
                    progress(f"{n} concurrent calls")
                    text = greeting_text(f"{run}-{n}")
                    voicebridge.set_greeting_text(text)
                    phases[f"uncached-{n}"] = run_phase(
                        pool,
                        f"uncached greeting, {n} calls starting together",
                        Plan(url, together(n), hang_up_at=ttfb + 2.0),
                    )
                    checks[f"deepgram_first_byte-{n}"] = first_byte_seconds(deepgram.stats(), text)
                    phases[f"relay-{n}"] = run_phase(
                        pool,
                        f"first-audio floor, {n} calls starting together",
                        Plan(relay.url, together(n), hang_up_at=ttfb + 2.0, webhook=False),
                    )
                    checks[f"relay_first_byte-{n}"] = first_byte_seconds(
                        relay_deepgram.stats(), RELAY_TEXT
                    )
                    ramp = args.ramp * n
                    phases[f"cached-{n}"] = run_phase(
                        pool,
                        f"cached greeting, {n} calls arriving over {ramp:.2f} s",
                        Plan(url, arriving(n, ramp), hang_up_at=ramp + 1.0),
                        pid=pid,
                        at={"start": 0.0, "all_in": ramp + 0.5},
                    )
                    phases[f"held-{n}"] = run_phase(
                        pool,
                        f"cached-greeting floor, {n} calls arriving over {ramp:.2f} s",
                        Plan(held.url, arriving(n, ramp), hang_up_at=ramp + 1.0, webhook=False),
                        pid=held.process.pid,
                        at={"start": 0.0, "all_in": ramp + 0.5},
                    )
                progress(f"server CPU per caller media frame, {args.media_calls} calls")
                window = (1.0, 1.0 + args.duration)
                media_plan = {
                    "voicebridge": Plan(
                        url, arriving(args.media_calls, 0.5), window[1] + 0.1, window=window
                    ),
                    "floor": Plan(
                        bare.url,
                        arriving(args.media_calls, 0.5),
                        window[1] + 0.1,
                        webhook=False,
                        window=window,
                    ),
                }
                pids = {"voicebridge": pid, "floor": bare.process.pid}
                checks["floor_rss_baseline"] = procstat.sample(bare.process.pid)
                for round_ in range(args.rounds):
                    for target in ("voicebridge", "floor"):
                        phases[f"media-{target}-{round_}"] = run_phase(
                            pool,
                            f"{target}, round {round_ + 1}",
                            media_plan[target],
                            pid=pids[target],
                            at={"window_start": window[0], "window_end": window[1]},
                            expect_audio=target == "voicebridge",
                        )
                progress("admin edit, restart, Deepgram down")
                edited = greeting_text(f"{run}-admin")
                started = time.monotonic()
                save_greeting_in_admin(url, edited)
                checks["admin_save_seconds"] = time.monotonic() - started
                phases["after-admin-edit"] = run_phase(
                    pool, "first call after an admin edit", Plan(url, (0.0,), hang_up_at=1.0)
                )
                time.sleep(0.3)
                checks["after_admin_edit"] = voicebridge.last_call()
                checks["peak"] = procstat.sample(pid)
            with voicebridge.running("daphne-restarted.log") as server:
                if cores is not None:
                    cpus.pin(server.process.pid, server_cpus)
                phases["after-restart"] = run_phase(
                    pool, "first call after a restart", Plan(server.url, (0.0,), hang_up_at=1.0)
                )
                time.sleep(0.3)
                checks["after_restart"] = voicebridge.last_call()
                checks["deepgram"] = deepgram.stats()
                deepgram.process.terminate()
                deepgram.process.wait(timeout=10)
                phases["deepgram-down"] = run_phase(
                    pool, "a call while Deepgram is down", Plan(server.url, (0.0,), hang_up_at=1.0)
                )
                time.sleep(0.3)
                checks["deepgram_down"] = voicebridge.last_call()
        if args.control_calls:
            progress("live-call control across two workers sharing Redis and PostgreSQL ...")
            checks["control"] = run_control_roundtrip(calls=args.control_calls)
        if args.long_calls:
            checks["long_calls"] = long_calls_phase(args)
    finally:
        pool.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    rows, figures = assess(args, phases, checks)
    print()
    print(table(rows))
    path = write_json(
        args.out,
        {
            "run": run,
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "figures": figures,
            "rows": rows,
            "phases": {
                name: {
                    "calls": p.calls,
                    "ttfa_ms": spread(p.ttfa),
                    "errors": p.errors[:20],
                    "error_count": len(p.errors),
                    "frames_in_window": p.frames_in_window,
                    "caller_max_lateness_ms": p.max_tick_lag * 1000,
                    "caller_cpu_seconds": p.client_cpu,
                    "server_samples": p.samples,
                }
                for name, p in phases.items()
            },
        },
    )
    print(f"\nwritten to {path}")
    errors = sum(len(p.errors) for p in phases.values())
    long_calls = checks.get("long_calls")
    if isinstance(long_calls, dict):
        errors += long_calls.get("dropped", 0)
    if errors:
        print(f"{errors} calls went wrong: see the JSON", file=sys.stderr)
        return 1
    return 0


def long_calls_phase(args: argparse.Namespace) -> dict[str, object]:
    """Hold the long calls on two workers and say how it went."""
    progress(
        f"{args.long_calls} long calls held {args.hold:.0f} s across two workers sharing Redis "
        "and PostgreSQL ..."
    )
    started = time.monotonic()
    result = run_long_calls(calls=args.long_calls, hold=args.hold)
    if "skipped" in result:
        progress(f"    skipped: {result['skipped']}")
    else:
        progress(
            f"    {time.monotonic() - started:4.1f} s, {result['kept']} kept, "
            f"{result['dropped']} dropped {result['dropped_close_codes'] or ''}"
        )
    return result


def main_long_calls(args: argparse.Namespace) -> int:
    """`--phase long-calls`: only the long calls, with their rows and JSON."""
    run = secrets.token_hex(3)
    progress(f"voicebridge benchmark {run}: long calls only")
    result = long_calls_phase(args)
    print()
    print(table(long_call_rows(result)))
    path = write_json(
        args.out,
        {
            "run": run,
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "figures": {"long_calls": result},
            "rows": long_call_rows(result),
        },
    )
    print(f"\nwritten to {path}")
    return 1 if result.get("dropped") else 0


def first_byte_seconds(stats: dict[str, object], text: str) -> float:
    """Return the fake's own time to first byte for its latest request whose text starts `text`."""
    texts, seconds = stats["texts"], stats["first_byte_seconds"]
    assert isinstance(texts, list) and isinstance(seconds, list)
    for (_, said), first_byte in zip(reversed(texts), reversed(seconds), strict=True):
        if said.startswith(text) and first_byte is not None:
            return float(first_byte)
    return float("nan")


def assess(
    args: argparse.Namespace, phases: dict[str, Phase], checks: dict[str, object]
) -> tuple[list[Row], dict[str, object]]:
    """Turn the phases into the table's rows and the JSON's headline figures."""
    rows: list[Row] = []
    figures: dict[str, object] = {}
    largest, middle = max(args.calls), sorted(args.calls)[len(args.calls) // 2]
    for n in args.calls:
        cached = spread(phases[f"cached-{n}"].ttfa)
        target = "p99 <= 20" if n == largest else ""
        rows.append(
            Row(
                f"TTFA cached, {n} calls: p50 p95 p99 max (ms)",
                str(cached),
                target,
                cached.p99 <= 20 if target else None,
            )
        )
        figures[f"ttfa_cached_{n}"] = cached
        # What a bare app sending audio from memory takes under the same daphne and load.
        held = spread(phases[f"held-{n}"].ttfa)
        rows.append(Row(f"  same for the cached-greeting floor (bare app), {n} calls", str(held)))
        figures[f"floor_ttfa_cached_{n}"] = held
    # The server's CPU while the most cached callers arrive, beside the cached floor's: how near
    # a full core the calls' own work takes the server under that load.
    samples = {name: phases[f"{name}-{largest}"].samples for name in ("cached", "held")}
    cpu = {name: s["all_in"].cpu_seconds - s["start"].cpu_seconds for name, s in samples.items()}
    window = args.ramp * largest + 0.5
    rows.append(
        Row(
            f"server CPU while {largest} cached callers arrive ({window:.1f} s)",
            f"{cpu['cached']:.2f} s; cached floor {cpu['held']:.2f} s;"
            f" ratio {cpu['cached'] / cpu['held'] if cpu['held'] else float('inf'):.2f}x",
        )
    )
    figures["cpu_seconds_cached_arrivals"] = {
        "voicebridge": cpu["cached"],
        "floor": cpu["held"],
        "window_seconds": window,
    }
    for n in args.calls:
        uncached = spread(phases[f"uncached-{n}"].ttfa)
        rows.append(Row(f"TTFA uncached, {n} calls: p50 p95 p99 max (ms)", str(uncached)))
        figures[f"ttfa_uncached_{n}"] = uncached
    for n in args.calls:
        # Deepgram's part is what the fake measured for this greeting's request: from the
        # request's arrival to its first audio byte leaving (about the configured TTFB).
        deepgram_part = checks[f"deepgram_first_byte-{n}"]
        assert isinstance(deepgram_part, float)
        overhead = spread([t - deepgram_part for t in phases[f"uncached-{n}"].ttfa])
        target = "p50 <= 5, p99 <= 20" if n == middle else ""
        label = f"TTFA - Deepgram's first byte ({deepgram_part * 1000:.0f} ms)"
        rows.append(
            Row(
                f"{label}, uncached, {n} calls",
                str(overhead),
                target,
                (overhead.p50 <= 5 and overhead.p99 <= 20) if target else None,
            )
        )
        figures[f"server_overhead_uncached_{n}"] = overhead
        # What a bare relay under the same daphne adds on this machine, measured the same way.
        relay_part = checks[f"relay_first_byte-{n}"]
        assert isinstance(relay_part, float)
        relayed = spread([t - relay_part for t in phases[f"relay-{n}"].ttfa])
        rows.append(Row(f"  same for the first-audio floor (bare relay), {n} calls", str(relayed)))
        figures[f"floor_overhead_uncached_{n}"] = relayed

    # Each server's warm-up call is its first call after starting, with nothing cached yet.
    first_ours, first_relay = (phases[name].ttfa for name in ("warm-up", "relay-warm-up"))
    if first_ours and first_relay:
        ours, relay = first_ours[0] * 1000, first_relay[0] * 1000
        rows.append(
            Row(
                "TTFA uncached, first call after the server starts (ms)",
                f"{ours:.1f}; first-audio floor {relay:.1f}",
            )
        )
        figures["ttfa_first_call_ms"] = {"voicebridge": ours, "floor": relay}

    stats = checks["deepgram"]
    assert isinstance(stats, dict)
    per_text = Counter((model, text) for model, text in stats["texts"])
    floors = ("media-floor-", "relay-", "held-")
    calls = sum(p.calls for name, p in phases.items() if not name.startswith(floors))
    most = max(per_text.values(), default=0)
    rows.append(
        Row(
            "Deepgram requests per greeting",
            f"{stats['requests'] / max(1, len(per_text)):.2f} "
            f"(max {most}; {len(per_text)} greetings, {calls} calls)",
            "1",
            most == 1,
        )
    )
    opened = stats["speak_connections"]
    rows.append(
        Row(
            "Deepgram connections opened by the server",
            f"{opened} for {stats['requests']} requests",
            "reused",
            opened == 1,
        )
    )
    figures["deepgram"] = {"requests": stats["requests"], "connections": opened}
    for key, label in (
        ("after_admin_edit", "first call after an admin edit"),
        ("after_restart", "first call after a restart"),
        ("deepgram_down", "a call while Deepgram is down"),
    ):
        status, from_cache = checks[key]  # type: ignore[misc]
        phase = phases[key.replace("_", "-")]
        ttfa = f", TTFA {phase.ttfa[0] * 1000:.1f} ms" if phase.ttfa else ", no audio"
        rows.append(
            Row(label, f"{status}, from cache: {from_cache}{ttfa}", "from cache", bool(from_cache))
        )
        figures[key] = {"status": status, "from_cache": from_cache}

    per_frame = {}
    for target in ("voicebridge", "floor"):
        cpu = frames = 0.0
        for name, phase in phases.items():
            if name.startswith(f"media-{target}-"):
                cpu += (
                    phase.samples["window_end"].cpu_seconds
                    - phase.samples["window_start"].cpu_seconds
                )
                frames += phase.frames_in_window
        per_frame[target] = cpu / frames if frames else float("nan")
    # A run too short for the floor to register one clock tick has no ratio to show.
    ratio = per_frame["voicebridge"] / per_frame["floor"] if per_frame["floor"] else float("inf")
    rows.append(
        Row(
            f"server CPU per caller media frame ({args.media_calls} calls)",
            f"{per_frame['voicebridge'] * 1e6:.1f} us; floor {per_frame['floor'] * 1e6:.1f} us;"
            f" ratio {ratio:.2f}x",
            "<= 1.3x floor",
            ratio <= 1.3,
        )
    )
    figures["cpu_per_media_frame_us"] = {k: v * 1e6 for k, v in per_frame.items()}
    figures["cpu_ratio"] = ratio

    baseline = checks["rss_baseline"]
    peak = checks["peak"]
    assert isinstance(baseline, procstat.Sample) and isinstance(peak, procstat.Sample)
    busiest = phases[f"cached-{largest}"].samples["all_in"]
    per_call = (busiest.rss_bytes - baseline.rss_bytes) / largest
    # The first concurrent calls also start threads and allocator arenas once for the process;
    # the growth from the second-largest to the largest count is the cost of one more call.
    smaller = sorted(args.calls)[-2] if len(args.calls) > 1 else 0
    fewer = phases[f"cached-{smaller}"].samples["all_in"] if smaller else baseline
    marginal = (busiest.rss_bytes - fewer.rss_bytes) / (largest - smaller)
    floor_base = checks["floor_rss_baseline"]
    assert isinstance(floor_base, procstat.Sample)
    floor_busy = max(
        (p.samples["window_start"] for n, p in phases.items() if n.startswith("media-floor-")),
        key=lambda s: s.rss_bytes,
    )
    floor_per_call = (floor_busy.rss_bytes - floor_base.rss_bytes) / args.media_calls
    rows.append(Row("peak server RSS", f"{peak.peak_rss_bytes / MIB:.1f} MiB"))
    rows.append(
        Row(
            f"server RSS per concurrent call, {smaller} to {largest} calls",
            f"{marginal / KIB:.1f} KiB (floor {floor_per_call / KIB:.1f} KiB)",
            "<= 64 KiB",
            marginal <= 64 * KIB,
        )
    )
    rows.append(
        Row(
            f"server RSS over the 1-call baseline per call, {largest} calls",
            f"{per_call / KIB:.1f} KiB",
        )
    )
    figures["rss"] = {
        "baseline_bytes": baseline.rss_bytes,
        "peak_bytes": peak.peak_rss_bytes,
        "per_call_bytes": per_call,
        "marginal_per_call_bytes": marginal,
        "floor_per_call_bytes": floor_per_call,
    }
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
    return rows, figures


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


if __name__ == "__main__":
    raise SystemExit(main())
