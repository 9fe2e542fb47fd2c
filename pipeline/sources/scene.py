"""The scene: what an imagery source hands to detection for one cell."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from affine import Affine
from rasterio import features
from rasterio.crs import CRS
from shapely.geometry.base import BaseGeometry


def in_metres(crs: str) -> bool:
    """Whether a CRS is projected with metre units: pixel sizes and areas in degrees are not areas."""
    parsed = CRS.from_user_input(crs)
    return parsed.is_projected and parsed.linear_units in ("metre", "meter")


@dataclass(frozen=True)
class ReadGrid:
    """The pixel grid a source must deliver: a cell plus its halo."""

    crs: str
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) in the grid's CRS, for a north-up grid."""
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)

    def mask(self, geoms: list[BaseGeometry]) -> np.ndarray:
        """Pixels whose centre falls inside any of `geoms` (given in the grid's CRS)."""
        if not geoms:
            return np.zeros((self.height, self.width), dtype=bool)
        return features.rasterize([(g, 1) for g in geoms], out_shape=(self.height, self.width),
                                  transform=self.transform, fill=0, dtype="uint8").astype(bool)


@dataclass
class Composite:
    """One window's cloud-free composite: reflectance (bands, rows, cols), NaN where unseen."""

    reflectance: np.ndarray
    valid: np.ndarray
    dates: list[date]
    observations: np.ndarray  # valid acquisitions per pixel

    @classmethod
    def empty(cls, grid: ReadGrid, n_bands: int) -> Composite:
        """A window that saw nothing on the grid: every pixel unseen, no dates."""
        shape = (grid.height, grid.width)
        return cls(reflectance=np.full((n_bands, *shape), np.nan, dtype=np.float32),
                   valid=np.zeros(shape, dtype=bool), dates=[], observations=np.zeros(shape, dtype=np.uint8))


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
