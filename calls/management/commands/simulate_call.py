"""`manage.py simulate_call`: play Twilio's part of one call against a running server."""

from __future__ import annotations

import asyncio
import re
import textwrap
from argparse import RawDescriptionHelpFormatter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from calls.speech.audio import duration_seconds, wav_from_mulaw
from calls.twilio.protocol import GREETING_MARK
from calls.twilio.simulator import CallReport, simulate_call

_PRESS = re.compile(r"^([0-9*#])@(\d+(?:\.\d+)?)$")


def _press(value: str) -> tuple[float, str]:
    """Parse DIGIT@SECONDS, for example 1@2.5."""
    match = _PRESS.match(value)
    if match is None:
        raise ValueError(value)
    return float(match[2]), match[1]


class Command(BaseCommand):
    help = (
        "Call a running voicebridge server the way Twilio does, without a phone: post the signed "
        "voice webhook, follow the TwiML, open the signed Media Stream WebSocket, send caller "
        "audio, echo marks as the greeting finishes playing, follow the TwiML after each stream "
        "(the <Connect action>, new streams, Say, Redirect, Hangup) and report what the caller "
        "heard and the call's path. Exits with status 1 when the call failed, so it can check "
        "a deployment."
    )

    # The server's settings matter, not this machine's (a missing Deepgram key here is fine).
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        parser.description = textwrap.fill(self.help, 79)
        parser.epilog = (
            "examples:\n"
            "  manage.py simulate_call --url http://127.0.0.1:8000\n"
            "  manage.py simulate_call --url https://voice.example.com --to +15550100001 "
            "--out heard.wav\n"
            "  manage.py simulate_call --press 1@2.5 --press 2@6 --hang-up-after 10\n"
        )
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000",
            help="Where the server listens (default %(default)s). The webhook is POST <url>/voice.",
        )
        parser.add_argument(
            "--to",
            default="+15550100000",
            metavar="NUMBER",
            help="The called number, Twilio's To (default %(default)s); picks the greeting.",
        )
        parser.add_argument(
            "--from",
            dest="from_",
            default="+15550199999",
            metavar="NUMBER",
            help="The caller's number, Twilio's From (default %(default)s).",
        )
        parser.add_argument(
            "--out",
            type=Path,
            metavar="FILE.wav",
            help="Write what the caller heard to this WAV file (16-bit PCM, 8 kHz mono).",
        )
        parser.add_argument(
            "--press",
            action="append",
            default=[],
            metavar="DIGIT@SECONDS",
            help="Press a key that many seconds after the first stream starts, e.g. 1@0.5 "
            "(interrupts the greeting). Repeat for more keys: --press 1@2.5 --press 2@6.",
        )
        parser.add_argument(
            "--hang-up-after",
            type=float,
            metavar="SECONDS",
            help="Hang up this many seconds after the first stream starts instead of when the "
            "greeting finishes: holds the call open, caller audio flowing, across streams.",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            metavar="SECONDS",
            default=60.0,
            help="Give up after this many seconds in all (default %(default)s).",
        )
        parser.add_argument(
            "--fast",
            action="store_true",
            help="Do not wait for audio to play in real time: echo marks as soon as they arrive.",
        )
        parser.add_argument(
            "--auth-token",
            default=None,
            metavar="TOKEN",
            help="Twilio auth token to sign with (default: TWILIO_AUTH_TOKEN; unsigned if unset).",
        )
        parser.add_argument(
            "--public-url",
            default=None,
            metavar="URL",
            help="The address Twilio uses, which signatures cover (default: PUBLIC_URL, "
            "else --url).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            presses = [_press(value) for value in options["press"]]
        except ValueError as exc:
            raise CommandError(f"--press {exc} is not DIGIT@SECONDS, for example 1@2.5") from exc
        auth_token = options["auth_token"]
        if auth_token is None:
            auth_token = settings.TWILIO_AUTH_TOKEN
        public_url = options["public_url"]
        if public_url is None:
            public_url = settings.PUBLIC_URL
        url = options["url"].rstrip("/")
        self.stderr.write(
            f"Calling {url}/voice as Twilio (To {options['to']}, From {options['from_']}, "
            f"{'signed' if auth_token else 'unsigned'})…"
        )
        report = asyncio.run(
            simulate_call(
                url,
                to=options["to"],
                from_=options["from_"],
                auth_token=auth_token,
                public_url=public_url,
                dtmf=presses,
                hang_up_after=options["hang_up_after"],
                until_mark=None if options["hang_up_after"] is not None else GREETING_MARK,
                timeout=options["timeout"],
                realtime_playback=not options["fast"],
                on_event=_Progress(self.stderr.write).on_event,
            )
        )
        self.stdout.write(format_report(report))
        if options["out"] is not None:
            out: Path = options["out"]
            try:
                out.write_bytes(wav_from_mulaw(report.heard))
            except OSError as exc:
                raise CommandError(f"Could not write {out}: {exc}") from exc
            self.stdout.write(f"wrote {out} ({duration_seconds(report.heard):.2f} s)")
        if not report.ok:
            raise CommandError(f"The call failed. {next_step(report)}")
        self.stdout.write(
            self.style.SUCCESS(
                f"OK: the call connected and the caller heard "
                f"{duration_seconds(report.heard):.2f} s of audio."
            )
        )


class _Progress:
    """Lines on stderr as audio arrives, so a long greeting shows the call is alive."""

    def __init__(self, write: Any) -> None:
        self.write = write
        self.received = 0
        self.reported_seconds = 0
        self.first = True

    def on_event(self, name: str, message: dict[str, Any]) -> None:
        if name == "media":
            payload = str(message.get("media", {}).get("payload", ""))
            self.received += len(payload) * 3 // 4
            seconds = int(self.received / 8000)
            if self.first:
                self.first = False
                self.write("  first audio arrived")
            if seconds > self.reported_seconds:
                self.reported_seconds = seconds
                self.write(f"  {seconds} s of audio received")
        elif name == "stream-started":
            self.write(f"  stream {message['streamSid']} started")
        elif name == "stream-stopped":
            self.write(f"  stream {message['streamSid']} ended ({message['endedBy']})")
        elif name == "mark":
            self.write(f"  mark {message.get('mark', {}).get('name', '')!r} sent by the server")
        elif name == "clear":
            self.write("  clear: the server stopped the greeting")


def format_report(report: CallReport) -> str:
    """The call in a few aligned lines."""
    first = (
        f"{report.first_audio_after * 1000:.0f} ms after the stream started"
        if report.first_audio_after is not None
        else "none"
    )
    say = " / ".join(f'"{text}"' for text in report.say) or "none"
    lines = [
        ("TwiML", f"HTTP {report.twiml_status or 'no answer'}"),
        ("Say", say),
        ("Stream", report.stream_url or "none"),
        ("greeting id", report.parameters.get("greeting", "") or "none"),
        ("WebSocket", str(report.handshake_status or "not opened")),
        ("CallSid", report.call_sid),
        ("first audio", first),
        (
            "audio",
            f"{duration_seconds(report.audio):.2f} s received ({report.media_messages} media "
            f"messages), {duration_seconds(report.heard):.2f} s heard",
        ),
        ("marks", ", ".join(report.marks) or "none"),
        ("clears", str(report.clears)),
        ("streams", str(len(report.streams))),
        ("errors", "; ".join(report.errors) or "none"),
    ]
    lines += [("path" if n == 0 else "", step) for n, step in enumerate(report.path)]
    return "\n".join(f"{label:<12} {value}".rstrip() for label, value in lines)


def next_step(report: CallReport) -> str:
    """What to look at first, given how far the call got."""
    if report.twiml_status == 0:
        return "Is the server running at --url? Start it with `make run`."
    if report.twiml_status in (401, 403):
        return (
            "The webhook refused the signature: check that --auth-token/TWILIO_AUTH_TOKEN and "
            "--public-url/PUBLIC_URL match the server's."
        )
    if report.twiml_status != 200:
        return "The voice webhook failed: read the server's log."
    if report.handshake_status != 101:
        return "The Media Stream WebSocket was refused: check the server's log and PUBLIC_URL."
    if not report.heard:
        return "No audio reached the caller: check DEEPGRAM_API_KEY with `manage.py speak`."
    return "Read the errors above and the server's log."
