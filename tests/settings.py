"""Test settings: the project's settings with a throwaway secret and a quiet log."""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "not-a-secret-tests-only")
os.environ.setdefault("DEEPGRAM_API_KEY", "test-deepgram-key")
os.environ.setdefault("DEEPGRAM_API_URL", "http://127.0.0.1:9")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

from voicebridge.settings import *  # noqa: E402,F403

# Most tests play Twilio without signatures; the signature tests set TWILIO_AUTH_TOKEN themselves.
TWILIO_ALLOW_UNSIGNED = True
# Tests keep rendered speech in memory; servers they start use files beside their logs.
CACHES["speech"] = {  # noqa: F405
    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    "LOCATION": "speech",
    "TIMEOUT": None,
}
