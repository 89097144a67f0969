"""Caps the C library's malloc arenas, where it is glibc."""

from __future__ import annotations

import ctypes
import logging

logger = logging.getLogger(__name__)

# glibc's mallopt() parameter for the number of arenas (malloc.h).
M_ARENA_MAX = -8


def cap_arenas(limit: int) -> bool:
    """Keep threads started from now on to at most `limit` malloc arenas; whether it took."""
    if limit <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        # Not glibc (macOS, say): nothing to cap.
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    took = bool(mallopt(M_ARENA_MAX, limit))
    if not took:
        logger.info("malloc arenas not capped: the C library refused M_ARENA_MAX")
    return took
