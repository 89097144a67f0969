"""WSGI entry point, for management tooling only: calls need the ASGI application."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voicebridge.settings")

application = get_wsgi_application()
