"""`manage.py speak` against the fake Deepgram; `manage.py simulate_call` against real daphne."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings

from calls.records.queries import FALLBACK_GREETING
from calls.speech.audio import mulaw_to_pcm16
from calls.twilio.protocol import GREETING_MARK
from devtools.devserver import PROJECT_DIR, RunningServer, free_port
from devtools.fake_deepgram import FakeDeepgram, fake_audio, running_in_thread
from tests.bridge import manage, running_bridge

KEY = "right-key"


def pcm_of(path: Path) -> bytes:
    with wave.open(str(path)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 8000)
        return reader.readframes(reader.getnframes())


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# speak ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def thread_deepgram() -> Iterator[FakeDeepgram]:
    with running_in_thread(api_key=KEY, chunk_size=400) as server:
        yield server


@pytest.fixture
def speak_deepgram(thread_deepgram: FakeDeepgram, settings: Settings) -> FakeDeepgram:
    thread_deepgram.reset()
    settings.DEEPGRAM_API_URL = thread_deepgram.url
    settings.DEEPGRAM_API_KEY = KEY
    return thread_deepgram


def test_speak_writes_what_deepgram_said(speak_deepgram: FakeDeepgram, tmp_path: Path) -> None:
    out, err = run(
        "speak",
        "Hello from the bakery.",
        "--voice",
        "aura-2-thalia-en",
        "--out",
        str(tmp_path / "a.wav"),
    )
    audio = fake_audio("aura-2-thalia-en", "Hello from the bakery.")
    assert pcm_of(tmp_path / "a.wav") == mulaw_to_pcm16(audio)
    assert f"{len(audio) / 8000:.2f} s of speech" in out
    assert "Asking Deepgram" in err
    assert [r.model for r in speak_deepgram.requests] == ["aura-2-thalia-en"]


def test_speak_always_asks_deepgram_and_splits_long_text(
    speak_deepgram: FakeDeepgram, tmp_path: Path
) -> None:
    text = "A sentence that is spoken. " * 100
    run("speak", text, "--out", str(tmp_path / "long.wav"))
    run("speak", text, "--out", str(tmp_path / "again.wav"))
    assert len(speak_deepgram.requests) == 4
    assert all(len(r.text) <= 2000 for r in speak_deepgram.requests)
    assert pcm_of(tmp_path / "long.wav") == pcm_of(tmp_path / "again.wav")


def test_speak_says_what_to_do_about_a_bad_key(
    speak_deepgram: FakeDeepgram,
    settings: Settings,
    tmp_path: Path,
) -> None:
    settings.DEEPGRAM_API_KEY = "wrong-key"
    with pytest.raises(CommandError, match=r"answered 401.*check DEEPGRAM_API_KEY"):
        run("speak", "Hello.", "--out", str(tmp_path / "x.wav"))
    assert not (tmp_path / "x.wav").exists()


def test_speak_says_what_to_do_about_a_missing_key(
    speak_deepgram: FakeDeepgram,
    settings: Settings,
    tmp_path: Path,
) -> None:
    settings.DEEPGRAM_API_KEY = ""
    with pytest.raises(CommandError, match="Set DEEPGRAM_API_KEY"):
        run("speak", "Hello.", "--out", str(tmp_path / "x.wav"))


def test_speak_says_what_to_do_about_a_bad_voice(
    speak_deepgram: FakeDeepgram, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match=r"answered 400.*choose a voice"):
        run("speak", "Hello.", "--voice", "thalia", "--out", str(tmp_path / "x.wav"))


def test_speak_needs_words(speak_deepgram: FakeDeepgram) -> None:
    with pytest.raises(CommandError, match="nothing to speak"):
        run("speak", "  ")
    assert speak_deepgram.requests == []


def test_speak_lists_voices() -> None:
    out, _ = run("speak", "--list-voices")
    assert "aura-2-thalia-en" in out
    assert "aura-asteria-en" in out


# simulate_call against a real server ----------------------------------------------------------


@pytest.fixture(scope="module")
def bridge(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, dict[str, str], FakeDeepgram]]:
    with (
        running_in_thread(chunk_size=400) as deepgram,
        running_bridge(tmp_path_factory.mktemp("commands"), deepgram.url) as (server, env),
    ):
        yield server, env, deepgram


@pytest.mark.e2e
def test_simulate_call_reports_and_records_what_the_caller_heard(
    bridge: tuple[RunningServer, dict[str, str], FakeDeepgram], tmp_path: Path
) -> None:
    server, _, _ = bridge
    out, err = run("simulate_call", "--url", server.url, "--out", str(tmp_path / "heard.wav"))
    audio = fake_audio(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)
    assert pcm_of(tmp_path / "heard.wav") == mulaw_to_pcm16(audio)
    assert "TwiML        HTTP 200" in out
    assert f'Say          "{FALLBACK_GREETING.say_text}"' in out
    assert "WebSocket    101" in out
    assert f"{len(audio) / 8000:.2f} s heard" in out
    assert f"marks        {GREETING_MARK}" in out
    assert "errors       none" in out
    assert f"OK: the call connected and the caller heard {len(audio) / 8000:.2f} s" in out
    assert "first audio arrived" in err
    assert "streams      1" in out
    assert "path         webhook POST /voice: HTTP 200" in out
    assert "the caller hung up" in out


@pytest.mark.e2e
def test_simulate_call_presses_several_keys_on_a_call_held_open(
    bridge: tuple[RunningServer, dict[str, str], FakeDeepgram],
) -> None:
    server, _, _ = bridge
    out, err = run(
        "simulate_call", "--url", server.url, "--fast", "--hang-up-after", "1.5",
        "--press", "1@0.5", "--press", "2@1",
    )  # fmt: skip
    assert "errors       none" in out
    assert out.count("the caller hung up after 1.5 s") == 1
    assert "started" in err and "ended (caller)" in err


@pytest.mark.e2e
def test_simulate_call_follows_the_called_numbers_route(
    bridge: tuple[RunningServer, dict[str, str], FakeDeepgram], tmp_path: Path
) -> None:
    server, env, _ = bridge
    manage(
        env,
        "shell",
        "-c",
        "from calls.models import Greeting, PhoneNumber; "
        "g = Greeting.objects.create(name='Sales', text='Sales speaking.', say_text='', "
        "voice='aura-2-thalia-en'); PhoneNumber.objects.create(number='+15550100007', greeting=g)",
    )
    out, _ = run(
        "simulate_call", "--url", server.url, "--to", "+15550100007", "--fast",
        "--out", str(tmp_path / "sales.wav"),
    )  # fmt: skip
    assert pcm_of(tmp_path / "sales.wav") == mulaw_to_pcm16(
        fake_audio("aura-2-thalia-en", "Sales speaking.")
    )
    assert "Say          none" in out


@pytest.mark.e2e
def test_simulate_call_fails_with_status_1_when_the_greeting_cannot_be_spoken(
    bridge: tuple[RunningServer, dict[str, str], FakeDeepgram],
) -> None:
    server, env, deepgram = bridge
    manage(
        env,
        "shell",
        "-c",
        "from calls.models import Greeting, PhoneNumber; "
        "g = Greeting.objects.create(name='Closed', text='Never spoken before.'); "
        "PhoneNumber.objects.create(number='+15550100008', greeting=g)",
    )
    deepgram.fail(401, times=3)
    command = [sys.executable, "manage.py", "simulate_call", "--url", server.url]
    result = subprocess.run(
        [*command, "--to", "+15550100008", "--hang-up-after", "1.5"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "TwiML        HTTP 200" in result.stdout
    assert "No audio reached the caller" in result.stderr
    deepgram.reset()


def test_simulate_call_without_a_server_says_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="Is the server running"):
        run("simulate_call", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "5")


def test_simulate_call_refuses_a_malformed_key_press() -> None:
    with pytest.raises(CommandError, match="DIGIT@SECONDS"):
        run("simulate_call", "--press", "one")


def test_every_option_is_explained() -> None:
    for command, options in (
        ("simulate_call", ("--url", "--to", "--from", "--out", "--press", "--fast", "--timeout")),
        ("speak", ("--voice", "--out", "--list-voices")),
    ):
        result = subprocess.run(
            [sys.executable, "manage.py", command, "--help"],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        )
        assert result.returncode == 0, result.stderr
        for option in options:
            assert option in result.stdout
