"""Time and peak memory of each pipeline stage, for the run table and `make bench`."""

from __future__ import annotations

import resource
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """Accumulates wall time per stage; with tracemalloc on, also the peak Python-visible memory."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.peak_mb: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        tracing = tracemalloc.is_tracing()
        if tracing:
            tracemalloc.reset_peak()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start
            self.calls[stage] += 1
            if tracing:
                self.peak_mb[stage] = max(self.peak_mb[stage], tracemalloc.get_traced_memory()[1] / 2**20)

    def table(self) -> list[dict[str, float | str | int]]:
        return [{"stage": s, "seconds": round(self.seconds[s], 3), "calls": self.calls[s],
                 "peak_mb": round(self.peak_mb.get(s, 0.0), 1)} for s in self.seconds]


def max_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
