"""Overlapping tiles over a raster and seamless blending of their predictions.

Tiles reach the last row and column (the last tile is shifted back inside the raster rather
than padded), and overlaps are blended with weights that taper linearly towards interior tile
edges but not at the raster's own border, so there are no seams and nothing is counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tiling:
    """How a raster is cut for the detector: tile side, overlap blended between tiles, tiles per call."""

    tile_size: int = 256
    overlap: int = 32
    batch_size: int = 8


#: The one default, used by runs, `detect`, training's calibration and the benchmarks.
TILING = Tiling()


@dataclass(frozen=True)
class Tile:
    """A window of the raster, in pixels."""

    row: int
    col: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


def _starts(length: int, size: int, stride: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    starts.append(length - size)
    return starts


def tile_grid(height: int, width: int, size: int, overlap: int) -> list[Tile]:
    """Tiles of `size` (clipped to the raster when smaller) covering every pixel."""
    th, tw = min(size, height), min(size, width)
    stride = max(1, size - overlap)
    return [Tile(r, c, th, tw) for r in _starts(height, th, stride) for c in _starts(width, tw, stride)]


def blend_weights(tile: Tile, height: int, width: int, overlap: int) -> np.ndarray:
    """Weight of each pixel of a tile: 1 inside, tapering over the overlap at interior edges."""
    w = np.ones((tile.height, tile.width), dtype=np.float32)
    if overlap <= 0:
        return w
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    if tile.row > 0:
        w[:overlap] *= ramp[:, None]
    if tile.row + tile.height < height:
        w[-overlap:] *= ramp[::-1, None]
    if tile.col > 0:
        w[:, :overlap] *= ramp[None, :]
    if tile.col + tile.width < width:
        w[:, -overlap:] *= ramp[None, ::-1]
    return w
