"""The door every imagery source goes through: (grid, time window) -> composite."""

from __future__ import annotations

from datetime import date
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.config import DateRange, Windows
from pipeline.sources.scene import Composite, ReadGrid, Scene


class ImagerySource(Protocol):
    """Anything that can composite one time window on a requested grid."""

    bands: tuple[str, ...]

    def composite(self, grid: ReadGrid, window: DateRange) -> Composite | None:
        """The composite over the window, or None where the source has no acquisition there."""
        ...


@runtime_checkable
class AcquisitionReader(Protocol):
    """A source that can also hand out a window's acquisitions one by one, uncomposited: a lead's
    confidence counts the cloud-free acquisitions that show its change (pipeline/leads/confidence.py)."""

    def acquisition_reads(self, grid: ReadGrid, window: DateRange) -> list[tuple[date, np.ndarray]]:
        """(date, reflectance (bands, rows, cols), NaN where no data, cloud or snow) per acquisition, by date."""
        ...


def read_scene(source: ImagerySource, grid: ReadGrid, windows: Windows) -> Scene:
    """Both windows on one grid. A window without imagery here comes back empty (nothing valid,
    no dates) rather than as no scene, so the caller can say which window saw nothing."""
    before, after = (source.composite(grid, w) or Composite.empty(grid, len(source.bands))
                     for w in (windows.baseline, windows.monitoring))
    return Scene(grid=grid, bands=source.bands, before=before, after=after)
