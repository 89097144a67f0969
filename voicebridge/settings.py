"""Django settings for voicebridge: every value comes from the environment, read here only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent

# One `.env` in the project folder, read alike by `make run`, manage.py and daphne; variables set
# in the environment win. ENV_FILE names another file, or none when it is empty.
ENV_FILE = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE:
    load_dotenv(ENV_FILE, override=False)


def env_bool(name: str, default: bool = False) -> bool:
    """Read a yes/no environment variable."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    """Read a comma-separated environment variable."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG")

# An empty key makes Django refuse to start with a clear message, so production must set one.
SECRET_KEY = os.environ.get("SECRET_KEY") or (
    "django-insecure-voicebridge-development-only" if DEBUG else ""
)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")

# Behind a TLS proxy (nginx, ngrok): trust its headers only when told to, as Django does.
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST")
if env_bool("USE_X_FORWARDED_PROTO"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "calls",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "voicebridge.urls"
ASGI_APPLICATION = "voicebridge.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=0,
        # With a pool this makes it check each connection before handing it out
        # (ConnectionPool.check_connection): after PostgreSQL restarts, none is handed out dead.
        conn_health_checks=True,
    )
}
# Twilio gives a webhook 15 s: a database that does not answer must fail within seconds, so the
# webhook can still answer from what it remembers.
DATABASE_POOL_TIMEOUT = float(os.environ.get("DATABASE_POOL_TIMEOUT", "3"))
DATABASE_CONNECT_TIMEOUT = int(os.environ.get("DATABASE_CONNECT_TIMEOUT", "3"))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent calls write Call rows from several threads; wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # Write-ahead logging: a caller's greeting is read while other calls' rows are written.
    DATABASES["default"]["OPTIONS"]["init_command"] = (
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    # Opening a connection sets it up anew and closing one may checkpoint the log: a webhook's
    # worker thread keeps its own instead of opening one per request.
    DATABASES["default"]["CONN_MAX_AGE"] = None

# Under ASGI each webhook request runs in a thread of its own, which opens a connection of its
# own: a burst of incoming calls would open a PostgreSQL connection per call and run past the
# server's max_connections (requests then fail). A pool per worker caps and reuses them;
# DATABASE_POOL_SIZE=0 turns it off (behind PgBouncer, say).
DATABASE_POOL_SIZE = int(os.environ.get("DATABASE_POOL_SIZE", "10"))
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_SIZE > 0:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_SIZE,
        "timeout": DATABASE_POOL_TIMEOUT,
        # The pool retries a lost server with a backoff that doubles to minutes; giving up after
        # 10 s lets the next request try at once, so a server that is back is used within seconds.
        "reconnect_timeout": 10,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", DATABASE_CONNECT_TIMEOUT
    )

# Django also gives every webhook request a thread of its own, and glibc a new thread an arena of
# its own (up to eight per core), each keeping what it once held: after a burst of webhooks a
# worker stayed about 20 KiB per call larger than with two. 0 leaves the C library's default.
MALLOC_ARENA_MAX = int(os.environ.get("MALLOC_ARENA_MAX", "2"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")

# Commands queued for one call's consumer before a sender is told the call is too busy: above
# what a call may have queued (calls.live.commands), so the call's own refusal is what callers see.
CHANNEL_CAPACITY = int(os.environ.get("CHANNEL_CAPACITY", "200"))

if REDIS_URL:
    # redis-py gives up on a socket read after 5 s by default, exactly as long as channels_redis
    # blocks in BZPOPMIN: a quiet call's receive timed out and closed the call. Reads may take
    # that long and more; connecting must be quick, or a down Redis stalls every call.
    REDIS_CONNECT_TIMEOUT = float(os.environ.get("REDIS_CONNECT_TIMEOUT", "0.5"))
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "calls.server.layers.ResilientRedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 15.0,
                        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                    }
                ],
                "capacity": CHANNEL_CAPACITY,
            },
        }
    }
    # Cache reads and writes answer in milliseconds; past a second Redis counts as down.
    _redis_cache_options = {
        "socket_timeout": float(os.environ.get("REDIS_CACHE_TIMEOUT", "1.0")),
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    }
    CACHES: dict[str, dict[str, Any]] = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": _redis_cache_options,
        },
        "speech": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "speech",
            "TIMEOUT": None,
            "OPTIONS": _redis_cache_options,
        },
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY},
        }
    }
    # Without Redis, rendered speech lives in files: every worker process on the host shares it
    # and it survives restarts, so Deepgram is asked once per (voice, text).
    CACHES = {
        # Each call keeps a live-call key here, and its used stream token for two minutes; at
        # LocMemCache's default 300 entries a worker with 150 calls evicted live calls' keys.
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        },
        "speech": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            # A relative folder is in the project folder, wherever the server was started.
            "LOCATION": str(BASE_DIR / os.environ.get("SPEECH_CACHE_DIR", "speech-cache")),
            "TIMEOUT": None,
            "OPTIONS": {"MAX_ENTRIES": 1000},
        },
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The admin's CSS and JS are served by the app itself (daphne serves no files); collectstatic
# fills STATIC_ROOT for production, and during development the apps' folders are read directly.
WHITENOISE_USE_FINDERS = DEBUG

# Production hardening, on whenever DEBUG is off (the README's production settings).
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "calls": {
            "handlers": ["console"],
            "level": os.environ.get("LOG_LEVEL", "INFO"),
            "propagate": False,
        },
    },
}

# voicebridge's own settings.
DEEPGRAM_API_KEY = os.environ.get("DEEPGRAM_API_KEY", "")
DEEPGRAM_API_URL = os.environ.get("DEEPGRAM_API_URL", "https://api.deepgram.com").rstrip("/")
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
PUBLIC_URL = os.environ.get("PUBLIC_URL", "").rstrip("/")
# Unsigned Twilio traffic is only ever accepted on a development server with no token to check.
TWILIO_ALLOW_UNSIGNED = DEBUG and not TWILIO_AUTH_TOKEN
# Deepgram limits concurrent requests per project; a burst of calls queues here instead of
# collecting 429s. Retries happen only before the first audio byte, within this many seconds.
DEEPGRAM_MAX_CONCURRENCY = int(os.environ.get("DEEPGRAM_MAX_CONCURRENCY", "10"))
DEEPGRAM_RETRY_DEADLINE = float(os.environ.get("DEEPGRAM_RETRY_DEADLINE", "5"))
DEEPGRAM_FIRST_BYTE_TIMEOUT = float(os.environ.get("DEEPGRAM_FIRST_BYTE_TIMEOUT", "2.5"))
# Calls still "in progress" after this long belong to a worker that died (Twilio's default
# call time limit is four hours); `manage.py finish_stale_calls` and server start finish them.
STALE_CALL_SECONDS = int(os.environ.get("STALE_CALL_SECONDS", str(4 * 3600)))
# A WebSocket that sends no valid `start` within this many seconds is closed.
STREAM_START_TIMEOUT = float(os.environ.get("STREAM_START_TIMEOUT", "10"))
# Seconds a worker told to stop (SIGTERM) lets its calls go on before handing them over.
DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS", "25"))
# How many times one call's stream is started again after its worker stopped or died.
MAX_STREAM_RESUMES = int(os.environ.get("MAX_STREAM_RESUMES", "3"))
# Bearer token for the live-call control API (/api/calls/...); the API is off while it is empty.
VOICEBRIDGE_API_TOKEN = os.environ.get("VOICEBRIDGE_API_TOKEN", "")

# Bounds on HTTP requests, held as daphne reads them (calls/bounded_http.py). A body over
# MAX_REQUEST_BODY_BYTES (under /admin/, Django's DATA_UPLOAD_MAX_MEMORY_SIZE) is refused with
# 413 unread; a request whose head and body have not all arrived HTTP_REQUEST_READ_TIMEOUT
# seconds after its first byte gets 408; a connection idle HTTP_IDLE_TIMEOUT seconds is closed.
MAX_REQUEST_BODY_BYTES = int(os.environ.get("MAX_REQUEST_BODY_BYTES", str(64 * 1024)))
HTTP_REQUEST_READ_TIMEOUT = float(os.environ.get("HTTP_REQUEST_READ_TIMEOUT", "10"))
HTTP_IDLE_TIMEOUT = float(os.environ.get("HTTP_IDLE_TIMEOUT", "10"))
# /readyz answers 503 when a dependency has not answered within this many seconds.
READINESS_CHECK_TIMEOUT = float(os.environ.get("READINESS_CHECK_TIMEOUT", "1.5"))
# Load balancers probe the health views over plain HTTP; redirecting them to HTTPS fails the probe.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
