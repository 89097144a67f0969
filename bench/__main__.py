"""`python -m bench`: simulated Twilio callers against daphne; prints how voicebridge fares."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import cpus, procstat
from bench.assess import assess
from bench.callers import CallerPool, Plan
from bench.control import run_control_roundtrip
from bench.long_calls import long_call_rows, run_long_calls
from bench.phases import Phase, arriving, numbers, one_at_a_time, progress, run_phase, together
from bench.report import spread, table, write_json
from bench.servers import (
    CACHED_FLOOR_APPLICATION,
    FakeDeepgramProcess,
    Voicebridge,
    fake_deepgram,
    floor,
    prepare_voicebridge,
    relay_floor,
    save_greeting_in_admin,
)

RESULTS = Path(__file__).resolve().parent / "results"
SKIPPABLE = ("setup", "media", "burst", "admin")
# Seconds from a call's `start` to its first audio that no healthy phase needs more than.
_LISTEN = 1.0
# The set-up phase's calls hang up this long after `start`, and the server gets this long to
# write their records before its CPU is read.
_SETUP_HOLD, _SETUP_SETTLE = 0.5, 1.0


def greeting_text(tag: str) -> str:
    """A greeting as long as a real one, distinct per tag."""
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
        help="call counts to measure cached first audio at (default: 1 50 200)",
    )
    parser.add_argument(
        "--uncached",
        type=int,
        nargs="+",
        default=[1, 50],
        help="call counts to measure uncached first audio at, each call with a text of its own "
        "(default: 1 50)",
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
        "--rate",
        type=float,
        default=50.0,
        help="calls arriving a second (Poisson) in the uncached and set-up phases "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--cached-rate",
        type=float,
        default=100.0,
        help="calls arriving a second (Poisson) in the cached phases (default: %(default)s)",
    )
    parser.add_argument(
        "--setup-calls",
        type=int,
        default=100,
        help="calls that only set up and hang up while server CPU is measured "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--single",
        type=int,
        default=5,
        help="calls placed one at a time for the one-call rows (default: %(default)s)",
    )
    parser.add_argument(
        "--skip",
        nargs="+",
        choices=SKIPPABLE,
        default=[],
        help="phases to leave out of a run measuring only some rows",
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
        help="a small smoke run: 1 and 5 calls, 10 set-up and media calls, media for 1 s, "
        "one round, 2 long calls held 5 s",
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
        args.uncached = [1, 5]
        args.setup_calls, args.single = 10, 2
        args.control_calls = min(args.control_calls, 2)
        args.long_calls, args.hold = min(args.long_calls, 2), min(args.hold, 5.0)
    args.calls, args.uncached = sorted(set(args.calls)), sorted(set(args.uncached))
    counts = (
        min(args.calls),
        min(args.uncached),
        args.media_calls,
        args.rounds,
        args.setup_calls,
        args.single,
    )
    if min(counts) < 1 or min(args.duration, args.rate, args.cached_rate) <= 0:
        parser.error(
            "call counts, --media-calls, --setup-calls, --single, --duration, --rounds and "
            "the rates must be positive"
        )
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
            voicebridge = prepare_voicebridge(
                workdir, deepgram.url, deepgram_concurrency=2 * max(args.uncached) + 10
            )
            voicebridge.set_greeting_text(greeting_text(f"{run}-default"))
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
                # Each server's first call: it renders voicebridge's default greeting, which the
                # cached phases then play.
                first = Plan(url, (0.0,), hang_up_at=ttfb + _LISTEN)
                phases["warm-up"] = run_phase(pool, "warm-up call", first)
                phases["relay-warm-up"] = run_phase(
                    pool,
                    "first-audio floor, warm-up call",
                    Plan(relay.url, (0.0,), hang_up_at=ttfb + _LISTEN),
                )
                # One call from each caller process, so none pays its first dial in a phase.
                for name, other in (("held", held), ("floor", bare)):
                    run_phase(
                        pool,
                        f"{name} floor, warm-up calls",
                        Plan(other.url, together(args.processes), hang_up_at=0.5),
                        expect_audio=name == "held",
                    )
                checks["rss_baseline"] = procstat.sample(pid)
                servers = {"voicebridge": url, "relay": relay.url, "held": held.url}
                pids = {"voicebridge": pid, "held": held.process.pid}
                for index, n in enumerate(args.uncached):
                    progress(f"{n} uncached calls")
                    uncached_phases(
                        args, run, 10 + index, n, servers, voicebridge, phases, checks, pool
                    )
                    checks[f"deepgram_texts-{n}"] = deepgram.stats()
                    checks[f"relay_texts-{n}"] = relay_deepgram.stats()
                for n in args.calls:
                    progress(f"{n} cached calls")
                    cached_phases(args, n, servers, pids, phases, pool)
                if "burst" not in args.skip:
                    burst_phases(args, servers, pids, phases, pool)
                if "setup" not in args.skip:
                    setup_phases(args, {**servers, "held": held.url}, pids, phases, pool)
                if "media" not in args.skip:
                    checks["floor_rss_baseline"] = procstat.sample(bare.process.pid)
                    media_phases(args, url, bare.url, pid, bare.process.pid, phases, pool)
                if "admin" not in args.skip:
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
            if "admin" in args.skip:
                checks["deepgram"] = deepgram.stats()
            else:
                restart_phases(voicebridge, deepgram, cores, phases, checks, pool)
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
                    "setup_ms": spread(p.setups),
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


def uncached_phases(
    args: argparse.Namespace,
    run: str,
    index: int,
    n: int,
    servers: dict[str, str],
    voicebridge: Voicebridge,
    phases: dict[str, Phase],
    checks: dict[str, object],
    pool: CallerPool,
) -> None:
    """`n` calls to numbers of their own, each greeted with a text no call had before, on
    voicebridge and on the first-audio floor; one call is `--single` calls one at a time."""
    count = args.single if n == 1 else n
    called = numbers(index, count)
    routes = {number: greeting_text(f"{run}-{n}-{i}") for i, number in enumerate(called)}
    voicebridge.route_numbers(list(routes.items()))
    checks[f"greeting_texts-{n}"] = routes
    if n == 1:
        hold = args.ttfb + 0.3
        offsets, hold_for, span = one_at_a_time(count, hold + 0.2), hold, 0.0
        shape = f"{count} single calls one at a time"
    else:
        offsets = arriving(n, args.rate, seed=n)
        hold_for, span = None, offsets[-1]
        shape = f"{n} calls arriving over {span:.2f} s"
    for target, label in (("voicebridge", "uncached greeting"), ("relay", "first-audio floor")):
        phases[f"{'uncached' if target == 'voicebridge' else 'relay'}-{n}"] = run_phase(
            pool,
            f"{label}, {shape}",
            Plan(
                servers[target],
                offsets,
                hang_up_at=span + args.ttfb + _LISTEN,
                numbers=called,
                hold=hold_for,
            ),
        )


def cached_phases(
    args: argparse.Namespace,
    n: int,
    servers: dict[str, str],
    pids: dict[str, int],
    phases: dict[str, Phase],
    pool: CallerPool,
) -> None:
    """`n` calls arriving to a greeting already rendered, on voicebridge and the cached floor."""
    offsets = arriving(n, args.cached_rate, seed=1000 + n)
    span = offsets[-1]
    for target, label in (("voicebridge", "cached greeting"), ("held", "cached-greeting floor")):
        phases[f"{'cached' if target == 'voicebridge' else 'held'}-{n}"] = run_phase(
            pool,
            f"{label}, {n} calls arriving over {span:.2f} s",
            Plan(servers[target], offsets, hang_up_at=span + _LISTEN),
            pid=pids[target],
            at={"start": 0.0, "all_in": span + 0.5},
        )


def burst_phases(
    args: argparse.Namespace,
    servers: dict[str, str],
    pids: dict[str, int],
    phases: dict[str, Phase],
    pool: CallerPool,
) -> None:
    """The most calls, dialled ahead, sending `start` in the same millisecond."""
    n = max(args.calls)
    for target, label in (("voicebridge", "cached greeting"), ("held", "cached-greeting floor")):
        phases[f"burst-{target}"] = run_phase(
            pool,
            f"{label}, {n} calls dialled ahead starting together",
            Plan(servers[target], together(n), hang_up_at=_LISTEN, predial=True),
        )


def setup_phases(
    args: argparse.Namespace,
    servers: dict[str, str],
    pids: dict[str, int],
    phases: dict[str, Phase],
    pool: CallerPool,
) -> None:
    """Calls that only set up (webhook, handshake, `start`, greeting, record) and hang up,
    alternating voicebridge and the cached floor, with the server's CPU read around them."""
    offsets = arriving(args.setup_calls, args.rate, seed=7)
    span = offsets[-1]
    progress(f"server CPU per call set-up, {args.setup_calls} calls over {span:.2f} s")
    for round_ in range(args.rounds):
        for target in ("voicebridge", "held"):
            phases[f"setup-{target}-{round_}"] = run_phase(
                pool,
                f"{target}, round {round_ + 1}",
                Plan(
                    servers[target],
                    offsets,
                    hang_up_at=span + _SETUP_HOLD,
                    hold=_SETUP_HOLD,
                    media=False,
                ),
                pid=pids[target],
                at={"start": 0.0, "end": span + _SETUP_HOLD + _SETUP_SETTLE},
            )


def media_phases(
    args: argparse.Namespace,
    url: str,
    floor_url: str,
    pid: int,
    floor_pid: int,
    phases: dict[str, Phase],
    pool: CallerPool,
) -> None:
    """Calls streaming caller audio while the server's CPU is read, beside the drop floor."""
    progress(f"server CPU per caller media frame, {args.media_calls} calls")
    # The window opens once every call is set up and its greeting sent.
    window = (2.0, 2.0 + args.duration)
    offsets = arriving(args.media_calls, args.media_calls / 0.5, seed=3)
    plans = {
        "voicebridge": Plan(url, offsets, window[1] + 0.1, window=window),
        "floor": Plan(floor_url, offsets, window[1] + 0.1, window=window),
    }
    pids = {"voicebridge": pid, "floor": floor_pid}
    for round_ in range(args.rounds):
        for target in ("voicebridge", "floor"):
            phases[f"media-{target}-{round_}"] = run_phase(
                pool,
                f"{target}, round {round_ + 1}",
                plans[target],
                pid=pids[target],
                at={"window_start": window[0], "window_end": window[1]},
                expect_audio=target == "voicebridge",
            )


def restart_phases(
    voicebridge: Voicebridge,
    deepgram: FakeDeepgramProcess,
    cores: tuple[frozenset[int], frozenset[int]] | None,
    phases: dict[str, Phase],
    checks: dict[str, object],
    pool: CallerPool,
) -> None:
    """A call after a restart, then one while Deepgram is down: both from the cache."""
    with voicebridge.running("daphne-restarted.log") as server:
        if cores is not None:
            cpus.pin(server.process.pid, cores[0])
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


if __name__ == "__main__":
    raise SystemExit(main())
