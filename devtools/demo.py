"""`make demo`: voicebridge beside the fake Deepgram, with one call placed, so a newcomer can try it
with no Deepgram key and no phone."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from calls.twilio.simulator import simulate_call
from devtools.devserver import PROJECT_DIR, migrate, running_daphne, server_env
from devtools.fake_deepgram import running_in_thread

DEMO_DIR = PROJECT_DIR / ".demo"
ADMIN_USER = "demo"


def demo_env(folder: Path, deepgram_url: str, password: str) -> dict[str, str]:
    """Settings for a local demo server: its own database and cache in `folder`."""
    return server_env(
        {
            "DEBUG": "true",
            "SECRET_KEY": "demo-" + secrets.token_urlsafe(32),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
            "SPEECH_CACHE_DIR": str(folder / "speech-cache"),
            "DEEPGRAM_API_URL": deepgram_url,
            "DEEPGRAM_API_KEY": "demo-key",
            "DJANGO_SUPERUSER_PASSWORD": password,
        }
    )


def create_admin(env: dict[str, str]) -> None:
    """Create the demo's admin user, or give it the new password."""
    script = (
        "from django.contrib.auth import get_user_model; import os; U = get_user_model(); "
        f"u = U.objects.filter(username={ADMIN_USER!r}).first() or "
        f"U.objects.create_superuser({ADMIN_USER!r}, 'demo@example.com', 'x'); "
        "u.set_password(os.environ['DJANGO_SUPERUSER_PASSWORD']); u.save()"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=PROJECT_DIR,
        env=env,
        check=True,
    )


async def place_call(url: str) -> bool:
    """Place one simulated call and say what the caller heard."""
    report = await simulate_call(url, realtime_playback=False, timeout=20)
    for line in report.path:
        print(f"  {line}")
    heard = len(report.heard) / 8000
    if report.ok:
        print(f"The call was answered and the caller heard {heard:.1f} s of the greeting.")
    else:
        print(f"The call failed: {'; '.join(report.errors)}")
    return report.ok


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the demo until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="the server's port (8000)")
    parser.add_argument(
        "--dir", type=Path, default=DEMO_DIR, help="where its database and log live (.demo/)"
    )
    args = parser.parse_args(argv)
    args.dir.mkdir(exist_ok=True)
    password = secrets.token_urlsafe(9)
    with running_in_thread(ttfb=0.15, speed=1.0) as deepgram:
        env = demo_env(args.dir, deepgram.url, password)
        migrate(env)
        create_admin(env)
        with running_daphne(env, args.dir / "server.log", port=args.port) as server:
            print(f"voicebridge is running at {server.url}, beside a stand-in for Deepgram.")
            print("Its 'voice' is test tones, not speech: set DEEPGRAM_API_KEY and use `make run`")
            print("for real Aura voices.\n")
            print("Placing a call, as Twilio would...")
            ok = asyncio.run(place_call(server.url))
            print(
                f"\nOpen {server.url}/admin/ and sign in as {ADMIN_USER!r}, password {password!r}."
            )
            print("Edit the greeting, press Listen, then place another call with:")
            print(f"  .venv/bin/python manage.py simulate_call --url {server.url} --out heard.wav")
            print(f"\nThe server's log is in {args.dir / 'server.log'}. Press Ctrl-C to stop.")
            # Stopped with Ctrl-C or SIGTERM alike, so the server is stopped with it.
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                server.process.wait()
            except KeyboardInterrupt:
                print("\nStopping.")
            return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
