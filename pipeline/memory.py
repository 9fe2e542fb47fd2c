"""Freed memory handed back to the operating system while a scene streams through.

glibc's allocator keeps freed blocks for reuse, and after a large array is freed it serves
arrays of up to that size from its heap instead of mapping them afresh. Bands of rows, their
decisions and polygons are allocated and freed thousands of times between long-lived small
objects (the polygons kept for the merge), so the heap fills with free holes it never returns:
resident memory grows with the scene although what is in use does not. `malloc_trim` gives
those free pages back (glibc 2.8+ releases whole free pages anywhere in the heap, not only
at its top). Elsewhere (macOS, musl) there is nothing to call and nothing is done.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None
    return getattr(libc, "malloc_trim", None)


_TRIM = _malloc_trim()


def release_freed_memory() -> bool:
    """Return the allocator's free pages to the operating system; whether there was an allocator to ask."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
