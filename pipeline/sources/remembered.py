"""Composites kept in memory while a run's leads are written up.

A lead's confidence, its evidence image and its dossier page each need the same before and after
chip around it; without this, each of the three stages read it again from the source (three
fetches per lead from a remote API). What fits in the budget is kept, in the order it was first
read, and nothing is evicted: the stages go over the leads one after another in the same order,
and for such a cycle keeping the first leads' chips saves reads where least-recently-used eviction
would save none.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import DateRange
from pipeline.sources.base import ImagerySource
from pipeline.sources.scene import Composite, ReadGrid

#: Memory the kept composites may take (a lead's pair of 800 m chips takes about 0.3 MiB).
BUDGET_BYTES = 256 * 2**20


def _nbytes(composite: Composite | None) -> int:
    if composite is None:
        return 0
    return composite.reflectance.nbytes + composite.valid.nbytes + composite.observations.nbytes


class RememberedComposites:
    """`source`, whose composites are read once per grid and window within `budget_bytes`.

    Kept composites are handed out read-only, since every caller gets the same arrays. Anything
    else of the source (its bands, notes, single acquisitions) is the source's own.
    """

    def __init__(self, source: ImagerySource, budget_bytes: int = BUDGET_BYTES) -> None:
        self.inner = source
        self.budget_bytes = budget_bytes
        self.kept_bytes = 0
        self._kept: dict[tuple, Composite | None] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy being made): not the inner source's to answer
            raise AttributeError(name)
        return getattr(self.inner, name)

    def composite(self, grid: ReadGrid, window: DateRange) -> Composite | None:
        """The source's composite, read once while it fits the budget."""
        key = (grid, window.start, window.end)
        if key in self._kept:
            return self._kept[key]
        composite = self.inner.composite(grid, window)
        size = _nbytes(composite)
        if self.kept_bytes + size <= self.budget_bytes:
            if composite is not None:
                for array in (composite.reflectance, composite.valid, composite.observations):
                    array.flags.writeable = False
            self._kept[key] = composite
            self.kept_bytes += size
        return composite
