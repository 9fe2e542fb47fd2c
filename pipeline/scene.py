"""The scene: what an imagery source hands to detection for one cell."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from affine import Affine


@dataclass(frozen=True)
class ReadGrid:
    """The pixel grid a source must deliver: a cell plus its halo."""

    crs: str
    transform: Affine
    width: int
    height: int


@dataclass
class Composite:
    """One window's cloud-free composite: reflectance (bands, rows, cols), NaN where unseen."""

    reflectance: np.ndarray
    valid: np.ndarray
    dates: list[date]
    observations: np.ndarray  # valid acquisitions per pixel


@dataclass
class Scene:
    """Before and after composites on one grid, with the band names of their stacks."""

    grid: ReadGrid
    bands: tuple[str, ...]
    before: Composite
    after: Composite

    @property
    def valid(self) -> np.ndarray:
        return self.before.valid & self.after.valid
