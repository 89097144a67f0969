"""Test settings: the project's settings on a clean slate, never the developer's `.env` or
environment, with a throwaway secret and a quiet log."""

from __future__ import annotations

import os
from pathlib import Path


def settings_variables() -> set[str]:
    """Every variable voicebridge's settings read: the ones `.env.example` lists."""
    example = Path(__file__).resolve().parent.parent / ".env.example"
    lines = (line.strip() for line in example.read_text().splitlines())
    return {line.partition("=")[0] for line in lines if line and not line.startswith("#")}


for name in settings_variables():
    os.environ.pop(name, None)
os.environ["ENV_FILE"] = ""
# The PostgreSQL pass (tests.on_postgres) names its database here.
if os.environ.get("TEST_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
os.environ.update(
    {
        "SECRET_KEY": "not-a-secret-tests-only",
        "DEEPGRAM_API_KEY": "test-deepgram-key",
        "DEEPGRAM_API_URL": "http://127.0.0.1:9",
        "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
    }
)

from voicebridge.settings import *  # noqa: E402,F403

# Most tests play Twilio without signatures; the signature tests set TWILIO_AUTH_TOKEN themselves.
TWILIO_ALLOW_UNSIGNED = True
# Tests keep rendered speech in memory; servers they start use files beside their logs.
CACHES["speech"] = {  # noqa: F405
    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    "LOCATION": "speech",
    "TIMEOUT": None,
}
