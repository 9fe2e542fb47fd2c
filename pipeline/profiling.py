"""Time and peak memory of each pipeline stage, for the run table and `make bench`."""

from __future__ import annotations

import resource
import threading
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
        self.current: str | None = None  # the stage running now, for `RssByStage`

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        tracing = tracemalloc.is_tracing()
        if tracing:
            tracemalloc.reset_peak()
        outer, self.current = self.current, stage
        start = time.perf_counter()
        try:
            yield
        finally:
            self.current = outer
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


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (this one by default) now, on Linux; 0 where /proc does not
    have it (gone, or no /proc)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


class RssByStage:
    """Peak resident memory per stage of a `StageTimer`, sampled by a thread every `interval` s
    while the block runs: what tracemalloc cannot see (torch's and GDAL's buffers) included, so
    a benchmark can say which stage's memory grows with the scene. Time between stages counts
    as "other"."""

    def __init__(self, timer: StageTimer, interval: float = 0.005) -> None:
        self.timer, self.interval = timer, interval
        self.peak_mb: dict[str, float] = defaultdict(float)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="eoleads-rss")

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            stage = self.timer.current or "other"
            self.peak_mb[stage] = max(self.peak_mb[stage], rss_mb())

    def __enter__(self) -> RssByStage:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
