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
    """Probabilities (..., rows, cols) in the stored uint8 encoding, unseen pixels as PROBABILITY_NODATA.

    Band by band through one band's scratch: a stack of float temporaries as large as the
    probabilities would be held for every band of rows a scene streams through."""
    out = np.empty(probs.shape, np.uint8)
    scratch = np.empty(probs.shape[-2:], np.float32)
    for band, stored in zip(probs.reshape(-1, *probs.shape[-2:]), out.reshape(-1, *probs.shape[-2:]), strict=True):
        np.rint(np.multiply(band, PROBABILITY_SCALE, out=scratch), out=scratch)
        stored[...] = scratch
    np.copyto(out, PROBABILITY_NODATA, where=~np.broadcast_to(valid, probs.shape))
    return out


#: Side of the GeoTIFF's square tiles; rows are written a whole row of tiles at a time.
BLOCK = 256


class ProbabilityWriter:
    """A tiled uint8 GeoTIFF of probabilities written row band by row band, in order from the top
    within each strip of columns (a strip starts at a multiple of BLOCK), in whole rows of tiles, so
    a scene of any size is never held whole and no tile is written twice; the file appears
    (atomically) only when the block that writes it succeeds and every pixel was written.

    Compressed with deflate, which every GIS reads, on every core: on the CPU the engine's other
    stages wait while it writes (half the time of one core for the same bytes)."""

    def __init__(self, path: Path, grid: ReadGrid, names: tuple[str, ...], tags: dict[str, str] | None = None) -> None:
        self.path, self.grid, self.names, self.tags = Path(path), grid, names, tags or {}
        self._pending: dict[int, list[np.ndarray]] = {}  # per strip (its first column): rows not yet written
        self._written: dict[int, tuple[int, int]] = {}  # per strip: rows written, its width

    def __enter__(self) -> ProbabilityWriter:
        profile = dict(driver="GTiff", width=self.grid.width, height=self.grid.height, count=len(self.names),
                       dtype="uint8", crs=self.grid.crs, transform=self.grid.transform, nodata=PROBABILITY_NODATA,
                       compress="deflate", num_threads="ALL_CPUS", tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._dst = rasterio.open(tmp, "w", **profile)
        for i, name in enumerate(self.names, start=1):
            self._dst.set_band_description(i, name)
        self._dst.update_tags(SCALE=str(1 / PROBABILITY_SCALE), NODATA_MEANING="not seen on both dates",
                              MEANING="change probability per band's category", **self.tags)
        return self

    def write(self, probs: np.ndarray, valid: np.ndarray, col: int = 0) -> None:
        """The next rows of the strip starting at column `col`: probabilities (len(names), rows, cols)
        and where they were seen (rows, cols)."""
        if col % BLOCK:
            raise ValueError(f"{self.path}: a strip starts at column {col}, not at a multiple of {BLOCK}")
        pending = self._pending.setdefault(col, [])
        pending.append(probabilities_as_uint8(probs, valid[None]))
        rows = sum(p.shape[1] for p in pending)
        if rows >= BLOCK or self._written.get(col, (0, 0))[0] + rows == self.grid.height:
            self._write_whole_blocks(col, rows)

    def _write_whole_blocks(self, col: int, rows: int) -> None:
        pending = self._pending[col]
        data = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
        row = self._written.get(col, (0, 0))[0]
        n = rows if row + rows == self.grid.height else rows // BLOCK * BLOCK
        self._dst.write(data[:, :n], window=Window(col, row, data.shape[2], n))
        self._written[col] = (row + n, data.shape[2])
        self._pending[col] = [data[:, n:]] if n < rows else []

    def _missing(self) -> str | None:
        """What of the grid was not written, if anything."""
        short = [f"columns from {col}: {rows} rows" for col, (rows, _) in self._written.items()
                 if rows != self.grid.height]
        width = sum(w for _, w in self._written.values())
        if short or width != self.grid.width:
            return f"{'; '.join(short) or 'all rows'} of {self.grid.height}, {width} of {self.grid.width} columns"
        return None

    def __exit__(self, *exc) -> None:
        self._dst.close()
        missing = self._missing() if exc[0] is None else None
        if missing:
            exc = (RuntimeError, RuntimeError(f"{self.path}: written {missing}"), None)
            self._atomic.__exit__(*exc)
            raise exc[1]
        self._atomic.__exit__(*exc)


def write_probabilities(path: Path, probs: np.ndarray, valid: np.ndarray, grid: ReadGrid, names: tuple[str, ...],
                        tags: dict[str, str] | None = None) -> Path:
    """A tiled, compressed uint8 GeoTIFF of `probs` (len(names), rows, cols), written atomically."""
    with ProbabilityWriter(path, grid, names, tags) as writer:
        writer.write(probs, valid)
    return Path(path)
