"""A pair of co-registered GeoTIFFs (before, after) as a GIS user already holds them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from detectors.bands import REFLECTANCE_BANDS
from pipeline.errors import InputError
from pipeline.sources.local import inspect_file, read_reflectance
from pipeline.sources.scene import ReadGrid


@dataclass
class ImagePair:
    """Reflectance of both dates on the before image's grid; NaN where a date saw nothing."""

    grid: ReadGrid
    before: np.ndarray
    after: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.before).all(axis=0) & np.isfinite(self.after).all(axis=0)


def read_pair(before: Path, after: Path, radiometry: str = "auto", bands: dict[str, int] | None = None,
              wanted: tuple[str, ...] = REFLECTANCE_BANDS) -> ImagePair:
    """Both images on the before image's grid (the after image is warped if its grid differs).

    Band names come from the files' band descriptions or `bands` ({name: 1-based index});
    scale and offset from the files' tags or `radiometry` (L1C, L2A), as for the local source.
    """
    with rasterio.open(before) as src:
        grid = ReadGrid(crs=src.crs.to_string() if src.crs else "", transform=src.transform,
                        width=src.width, height=src.height)
    first, second = inspect_file(Path(before), radiometry, bands), inspect_file(Path(after), radiometry, bands)
    pair = ImagePair(grid, read_reflectance(first, grid, wanted), read_reflectance(second, grid, wanted))
    if not pair.valid.any():
        raise InputError(after, "extent", f"does not overlap {before} with valid data",
                         "give two images of the same place")
    return pair
