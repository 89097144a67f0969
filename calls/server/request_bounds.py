"""How large an HTTP request's body may be and how long the request may take to arrive."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse


@dataclass(frozen=True)
class RequestBounds:
    """The limits every HTTP request to this process is held to."""

    body_bytes: int
    admin_body_bytes: int
    admin_prefix: bytes
    read_timeout: float
    idle_timeout: float

    @classmethod
    def from_settings(cls) -> RequestBounds:
        """Read the bounds from Django's settings."""
        admin_body = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return cls(
            body_bytes=settings.MAX_REQUEST_BODY_BYTES,
            # The admin keeps Django's own limit (None there means none).
            admin_body_bytes=sys.maxsize if admin_body is None else admin_body,
            admin_prefix=reverse("admin:index").encode(),
            read_timeout=settings.HTTP_REQUEST_READ_TIMEOUT,
            idle_timeout=settings.HTTP_IDLE_TIMEOUT,
        )

    def body_limit(self, target: bytes) -> int:
        """Return the most body bytes a request for `target` (its request line's URL) may send."""
        path = urlsplit(target).path
        if path.startswith(self.admin_prefix):
            return max(self.body_bytes, self.admin_body_bytes)
        return self.body_bytes
