"""Freed heap memory goes back to the operating system (pipeline.memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

#: In a fresh interpreter, so that no other test's heap is measured. glibc's mmap threshold is fixed
#: at 32 MiB (its dynamic threshold, raised by the first large array freed, differs from machine to
#: machine), so the 1 MiB arrays come from the heap; a smaller array kept after each pins the heap's
#: top, so freeing the arrays leaves holes that only a trim returns.
_GLIBC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
_HOLES = textwrap.dedent("""
    import json
    import sys
    import numpy as np
    from pipeline.memory import free_bytes_held, release_freed_memory
    from pipeline.profiling import rss_mb

    arrays, kept = [], []
    for _ in range(256):
        arrays.append(np.ones(2**17))  # 1 MiB, touched
        kept.append(np.ones(2**13))  # 64 KiB: too large for the free small blocks at the heap's start
    held = rss_mb()
    del arrays
    freed, free_held = rss_mb(), free_bytes_held()
    trimmed = release_freed_memory(kept=int(sys.argv[1]))
    print(json.dumps({"held": held, "freed": freed, "after": rss_mb(), "trimmed": trimmed, "free_held": free_held}))
""")


def _holes(kept: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | _GLIBC
    out = subprocess.run([sys.executable, "-c", _HOLES, str(kept)], capture_output=True, text=True, check=True,
                         env=env)
    mb = json.loads(out.stdout)
    assert mb["trimmed"]
    assert mb["freed"] > mb["held"] - 64, "the heap kept its holes before the trim (else this shows nothing)"
    return mb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_heap_holes_are_returned_to_the_system():
    mb = _holes(kept=0)
    assert mb["after"] < mb["freed"] - 192, mb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_free_memory_below_what_may_be_kept_is_left_for_the_next_arrays():
    mb = _holes(kept=2**30)
    if mb["free_held"] is None:
        pytest.skip("glibc before 2.33 (no mallinfo2): every call trims")
    assert mb["free_held"] > 192 * 2**20, mb  # what the allocator held free, and kept
    assert mb["after"] > mb["freed"] - 32, mb
