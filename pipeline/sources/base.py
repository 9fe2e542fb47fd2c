"""The door every imagery source goes through: (grid, time window) -> composite."""

from __future__ import annotations

from typing import Protocol

from pipeline.config import DateRange, Windows
from pipeline.sources.scene import Composite, ReadGrid, Scene


class ImagerySource(Protocol):
    """Anything that can composite one time window on a requested grid."""

    bands: tuple[str, ...]

    def composite(self, grid: ReadGrid, window: DateRange) -> Composite | None:
        """The composite over the window, or None where the source has no acquisition there."""
        ...


def read_scene(source: ImagerySource, grid: ReadGrid, windows: Windows) -> Scene | None:
    """Both windows on one grid, or None if either window has no imagery for this grid."""
    before = source.composite(grid, windows.baseline)
    after = source.composite(grid, windows.monitoring) if before is not None else None
    if before is None or after is None:
        return None
    return Scene(grid=grid, bands=source.bands, before=before, after=after)
