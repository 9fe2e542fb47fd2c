"""A pair of co-registered GeoTIFFs (before, after) as a GIS user already holds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import calculate_default_transform, transform_bounds

from detectors.bands import REFLECTANCE_BANDS
from pipeline.detection.engine import Radiometry, RowBand
from pipeline.errors import InputError
from pipeline.inputs.grid import utm_epsg
from pipeline.inputs.zones import Zones
from pipeline.sources.local import (
    ImageFile,
    inspect_file,
    radiometry_notes,
    read_digital_numbers,
    read_reflectance,
)
from pipeline.sources.scene import ReadGrid, in_metres


@dataclass
class ImagePair:
    """Reflectance of both dates on the before image's grid; NaN where a date saw nothing."""

    grid: ReadGrid
    before: np.ndarray
    after: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.before).all(axis=0) & np.isfinite(self.after).all(axis=0)


@dataclass
class PairFiles:
    """Both images checked (bands, radiometry) and the grid to detect on, before any pixel is read."""

    grid: ReadGrid
    before: ImageFile
    after: ImageFile
    notes: list[str] = field(default_factory=list)


def open_pair(before: Path, after: Path, radiometry: str = "auto", bands: dict[str, int] | None = None
              ) -> PairFiles:
    """Both images inspected, on the before image's grid, or its UTM zone where that grid is in
    degrees (see `metric_grid`).

    Band names come from the files' band descriptions or `bands` ({name: 1-based index});
    scale and offset from the files' tags or `radiometry` (L1C, L2A), as for the local source.
    """
    first, second = inspect_file(Path(before), radiometry, bands), inspect_file(Path(after), radiometry, bands)
    grid, notes = metric_grid(first.path)
    return PairFiles(grid, first, second, notes + radiometry_notes([first, second]))


def read_pair(before: Path, after: Path, radiometry: str = "auto", bands: dict[str, int] | None = None,
              wanted: tuple[str, ...] = REFLECTANCE_BANDS) -> ImagePair:
    """Reflectance of both images in memory on the grid of `open_pair` (the after image warped if
    its grid differs): for pairs that fit in memory (training, evaluation); `detect` streams them
    with `PairBands`."""
    files = open_pair(before, after, radiometry, bands)
    pair = ImagePair(files.grid, read_reflectance(files.before, files.grid, wanted),
                     read_reflectance(files.after, files.grid, wanted), files.notes)
    if not pair.valid.any():
        raise no_overlap(files)
    return pair


def no_overlap(files: PairFiles) -> InputError:
    """The error for two images that share no pixel seen on both dates."""
    return InputError(files.after.path, "extent", f"does not overlap {files.before.path} with valid data",
                      "give two images of the same place")


#: GDAL settings for reading a pair band by band: decompression on every core, and a small block
#: cache: rows are read in whole rows of blocks, once each, so a larger cache would only grow
#: with the scene. The cache is in bytes: rasterio hands an integer to GDALSetCacheMax64, so a
#: plain 64 would be 64 bytes, not GDAL's "64 MB".
GDAL_READ_OPTIONS = {"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_CACHEMAX": 16 * 2**20}


class PairBands:
    """Bands of rows of both images, as the engine asks for them, read in whole rows of the files'
    blocks (each block is decompressed once) and kept in their own dtype: the digital numbers
    become reflectance on the device (`radiometry`)."""

    def __init__(self, files: PairFiles, wanted: tuple[str, ...], zones: Zones | None = None) -> None:
        self.files, self.wanted, self.zones = files, wanted, zones
        self._srcs: list = []
        self._columns = (0, 0)  # the strip of columns cached
        #: Blocks of rows read and still needed, each (first scene row, [before, after (bands, rows, cols),
        #: valid (rows, cols)]): kept apart, not joined, so a new block never copies the rows before it.
        self._blocks: list[tuple[int, list[np.ndarray]]] = []

    @property
    def radiometry(self) -> tuple[Radiometry, Radiometry]:
        return tuple(Radiometry(f.scale, f.offset) for f in (self.files.before, self.files.after))

    def __enter__(self) -> PairBands:
        self._env = rasterio.Env(**GDAL_READ_OPTIONS)
        self._env.__enter__()
        self._srcs = [rasterio.open(f.path) for f in (self.files.before, self.files.after)]
        block = self._srcs[0].block_shapes[0][0]
        self._step = max(block, -(-256 // block) * block)  # whole blocks, at least 256 rows
        return self

    def __exit__(self, *exc) -> None:
        for src in self._srcs:
            src.close()
        self._env.__exit__(*exc)

    def _grid(self, row0: int, row1: int) -> ReadGrid:
        grid, (col0, col1) = self.files.grid, self._columns
        return ReadGrid(grid.crs, grid.transform @ Affine.translation(col0, row0), col1 - col0, row1 - row0)

    def _read_rows(self, row0: int, row1: int) -> list[np.ndarray]:
        grid = self._grid(row0, row1)
        dates = [read_digital_numbers(src, f, grid, self.wanted)
                 for src, f in zip(self._srcs, (self.files.before, self.files.after), strict=True)]
        return [dates[0][0], dates[1][0], ~(dates[0][1] | dates[1][1])]

    def read(self, row0: int, row1: int, col0: int, col1: int) -> RowBand:
        """Rows [row0, row1) and columns [col0, col1) of both images on the grid; the bands of a strip
        of columns are asked for from the top down."""
        if not self._blocks or row0 < self._blocks[0][0] or (col0, col1) != self._columns:
            self._columns, self._blocks = (col0, col1), []
        end = self._blocks[-1][0] + self._blocks[-1][1][2].shape[0] if self._blocks else row0 - row0 % self._step
        while end < row1:
            self._blocks.append((end, self._read_rows(end, min(end + self._step, self.files.grid.height))))
            end += self._blocks[-1][1][2].shape[0]
        self._blocks = [(top, b) for top, b in self._blocks if top + b[2].shape[0] > row0]
        # a copy: a band waiting in the engine's queue must not keep the blocks alive
        before, after, valid = (np.concatenate([b[i][..., max(row0 - top, 0):row1 - top, :] for top, b in self._blocks],
                                               axis=-2) for i in range(3))
        zones = self.zones.masks(self._grid(row0, row1)) if self.zones else {}
        return RowBand(row0, col0, before, after, valid, zones)


def metric_grid(path: Path) -> tuple[ReadGrid, list[str]]:
    """The image's grid, or where its CRS is not in metres (degrees), the same extent on its UTM
    zone at about the same ground pixel size: mapping units are areas in metres, and detectors
    read pixels of metres. The note says so, since the outputs then come in that zone."""
    with rasterio.open(path) as src:
        grid = ReadGrid(src.crs.to_string(), src.transform, src.width, src.height)
        if in_metres(grid.crs):
            return grid, []
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        utm = f"EPSG:{utm_epsg((west + east) / 2, (south + north) / 2)}"
        transform, width, height = calculate_default_transform(src.crs, utm, src.width, src.height, *src.bounds)
    return ReadGrid(utm, transform, width, height), [
        f"{path.name} is in {grid.crs}, whose units are not metres: detected on its UTM zone {utm} at "
        f"{transform.a:.1f} m pixels, so that areas and mapping units are in metres; the outputs are in {utm}"]
