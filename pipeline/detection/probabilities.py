"""The one stored form of change probabilities, and its one GeoTIFF writer.

Probabilities are stored as uint8 0..250 (value / 250); 255 marks pixels not seen on both
dates. Runs (one file per cell) and `detect` (one file per pair) write through `write_probabilities`,
one band per category, each band named by its description.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from pipeline.atomic import atomic_path
from pipeline.sources.scene import ReadGrid

PROBABILITY_SCALE = 250
PROBABILITY_NODATA = 255


def probabilities_as_uint8(probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Probabilities (..., rows, cols) in the stored uint8 encoding, unseen pixels as PROBABILITY_NODATA."""
    return np.where(valid, np.round(probs * PROBABILITY_SCALE), PROBABILITY_NODATA).astype("uint8")


def write_probabilities(path: Path, probs: np.ndarray, valid: np.ndarray, grid: ReadGrid, names: tuple[str, ...],
                        tags: dict[str, str] | None = None) -> Path:
    """A tiled, compressed uint8 GeoTIFF of `probs` (len(names), rows, cols), written atomically."""
    profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=len(names), dtype="uint8",
                   crs=grid.crs, transform=grid.transform, nodata=PROBABILITY_NODATA, compress="deflate",
                   tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(Path(path)) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(probabilities_as_uint8(probs, valid[None]))
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
        dst.update_tags(SCALE=str(1 / PROBABILITY_SCALE), NODATA_MEANING="not seen on both dates",
                        MEANING="change probability per band's category", **(tags or {}))
    return Path(path)
