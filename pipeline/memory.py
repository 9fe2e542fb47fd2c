"""Freed memory handed back to the operating system while a scene streams through.

glibc's allocator keeps freed blocks for reuse, and after a large array is freed it serves
arrays of up to that size from its heap instead of mapping them afresh. Bands of rows, their
decisions and polygons are allocated and freed thousands of times between long-lived small
objects (the polygons kept for the merge), so the heap fills with free holes it never returns:
resident memory grows with the scene although what is in use does not. `malloc_trim` gives
those free pages back (glibc 2.8+ releases whole free pages anywhere in the heap, not only
at its top). Pages handed back are faulted in again by the next band's arrays, so up to
`KEPT_FREE` bytes are left to the allocator: resident memory stays bounded by what is in use
plus that constant. Elsewhere (macOS, musl) there is nothing to call and nothing is done.
"""

from __future__ import annotations

import ctypes
import sys

#: Free bytes the allocator may keep for the next band's arrays before they are handed back.
KEPT_FREE = 256 * 2**20


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33+): ten size_t counters; `fordblks` is the free bytes it holds."""

    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


_LIBC = _glibc()
_TRIM = getattr(_LIBC, "malloc_trim", None)
_INFO = getattr(_LIBC, "mallinfo2", None)  # absent before glibc 2.33: every call trims
if _INFO is not None:
    _INFO.restype = _MallInfo2


def free_bytes_held() -> int | None:
    """Bytes the allocator holds free, in all its arenas; None where it cannot say."""
    return None if _INFO is None else int(_INFO().fordblks)


def release_freed_memory(kept: int = KEPT_FREE) -> bool:
    """Return the allocator's free pages to the operating system once it holds more than `kept` free
    bytes; whether there was an allocator to ask."""
    if _TRIM is None:
        return False
    held = free_bytes_held()
    if held is None or held > kept:
        _TRIM(0)
    return True
