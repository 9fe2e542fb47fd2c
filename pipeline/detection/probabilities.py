"""The one stored form of change probabilities, and its one GeoTIFF writer.

Probabilities are stored as uint8 0..250 (value / 250); 255 marks pixels not seen on both
dates. Runs (one file per cell) and `detect` (one file per pair) write through `write_probabilities`,
one band per category, each band named by its description.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from pipeline.atomic import atomic_path
from pipeline.sources.scene import ReadGrid

PROBABILITY_SCALE = 250
PROBABILITY_NODATA = 255


def probabilities_as_uint8(probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Probabilities (..., rows, cols) in the stored uint8 encoding, unseen pixels as PROBABILITY_NODATA."""
    return np.where(valid, np.round(probs * PROBABILITY_SCALE), PROBABILITY_NODATA).astype("uint8")


#: Side of the GeoTIFF's square tiles; rows are written a whole row of tiles at a time.
BLOCK = 256


class ProbabilityWriter:
    """A tiled, compressed uint8 GeoTIFF of probabilities written row band by row band, in order
    from the top, in whole rows of tiles, so a scene of any size is never held whole; the file
    appears (atomically) only when the block that writes it succeeds."""

    def __init__(self, path: Path, grid: ReadGrid, names: tuple[str, ...], tags: dict[str, str] | None = None) -> None:
        self.path, self.grid, self.names, self.tags = Path(path), grid, names, tags or {}
        self._pending: list[np.ndarray] = []
        self._row = 0  # first row not yet written

    def __enter__(self) -> ProbabilityWriter:
        profile = dict(driver="GTiff", width=self.grid.width, height=self.grid.height, count=len(self.names),
                       dtype="uint8", crs=self.grid.crs, transform=self.grid.transform, nodata=PROBABILITY_NODATA,
                       compress="deflate", tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._dst = rasterio.open(tmp, "w", **profile)
        for i, name in enumerate(self.names, start=1):
            self._dst.set_band_description(i, name)
        self._dst.update_tags(SCALE=str(1 / PROBABILITY_SCALE), NODATA_MEANING="not seen on both dates",
                              MEANING="change probability per band's category", **self.tags)
        return self

    def write(self, probs: np.ndarray, valid: np.ndarray) -> None:
        """The next rows: probabilities (len(names), rows, cols) and where they were seen (rows, cols)."""
        self._pending.append(probabilities_as_uint8(probs, valid[None]))
        rows = sum(p.shape[1] for p in self._pending)
        if rows >= BLOCK or self._row + rows == self.grid.height:
            self._write_whole_blocks(rows)

    def _write_whole_blocks(self, rows: int) -> None:
        data = np.concatenate(self._pending, axis=1) if len(self._pending) > 1 else self._pending[0]
        n = rows if self._row + rows == self.grid.height else rows // BLOCK * BLOCK
        self._dst.write(data[:, :n], window=Window(0, self._row, self.grid.width, n))
        self._row += n
        self._pending = [data[:, n:]] if n < rows else []

    def __exit__(self, *exc) -> None:
        self._dst.close()
        if exc[0] is None and self._row != self.grid.height:
            exc = (RuntimeError, RuntimeError(f"{self.path}: {self._row} of {self.grid.height} rows written"), None)
            self._atomic.__exit__(*exc)
            raise exc[1]
        self._atomic.__exit__(*exc)


def write_probabilities(path: Path, probs: np.ndarray, valid: np.ndarray, grid: ReadGrid, names: tuple[str, ...],
                        tags: dict[str, str] | None = None) -> Path:
    """A tiled, compressed uint8 GeoTIFF of `probs` (len(names), rows, cols), written atomically."""
    with ProbabilityWriter(path, grid, names, tags) as writer:
        writer.write(probs, valid)
    return Path(path)
