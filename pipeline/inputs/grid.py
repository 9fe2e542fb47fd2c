"""Square processing cells on the UTM grid of each cell's own zone.

Cells are aligned to multiples of their size in UTM metres, so the same place always falls in
the same cell (stable ids, resumable runs), and an AOI across zones 50N/51N is split at the zone
meridian and each part is processed in its own zone, without the area distortion of a single
projection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class Cell:
    """One processing cell: its UTM zone, grid position and the AOI part it is responsible for."""

    epsg: int
    col: int
    row: int
    size_px: int
    resolution: float
    aoi_part: BaseGeometry  # in the cell's CRS, clipped to the cell

    @property
    def id(self) -> str:
        return f"{self.epsg}_{self.col}_{self.row}"

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"

    @property
    def extent_m(self) -> float:
        return self.size_px * self.resolution

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        e = self.extent_m
        return (self.col * e, self.row * e, (self.col + 1) * e, (self.row + 1) * e)

    @property
    def geometry(self) -> BaseGeometry:
        return box(*self.bounds)

    def transform(self, margin_px: int = 0) -> Affine:
        """Affine transform of the cell raster, grown by a halo of `margin_px`."""
        minx, _, _, maxy = self.bounds
        m = margin_px * self.resolution
        return Affine(self.resolution, 0, minx - m, 0, -self.resolution, maxy + m)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone of a point."""
    zone = min(60, math.floor((lon + 180) / 6) + 1)
    return (32600 if lat >= 0 else 32700) + zone


def _zone_strips(aoi_wgs84: BaseGeometry) -> list[tuple[int, BaseGeometry]]:
    minx, miny, maxx, maxy = aoi_wgs84.bounds
    strips = []
    for zone in range(int((minx + 180) // 6) + 1, int((maxx + 180) // 6) + 2):
        west = -180 + 6 * (zone - 1)
        for south, north, base in ((-90, 0, 32700), (0, 90, 32600)):
            part = aoi_wgs84.intersection(box(west, max(south, miny - 1), west + 6, min(north, maxy + 1)))
            if not part.is_empty and part.area > 0:
                strips.append((base + min(zone, 60), part))
    return strips


def make_cells(aoi_wgs84: BaseGeometry, cell_size_px: int = 512, resolution: float = 10.0) -> list[Cell]:
    """All cells that intersect the AOI, each in its own UTM zone, in a stable order."""
    cells: list[Cell] = []
    extent = cell_size_px * resolution
    for epsg, part in _zone_strips(aoi_wgs84):
        # densify first so long straight edges follow their true course in the projected grid
        part_utm = gpd.GeoSeries([shapely.segmentize(part, 0.01)], crs="EPSG:4326").to_crs(epsg).iloc[0]
        shapely.prepare(part_utm)
        minx, miny, maxx, maxy = part_utm.bounds
        cols = np.arange(math.floor(minx / extent), math.ceil(maxx / extent))
        rows = np.arange(math.floor(miny / extent), math.ceil(maxy / extent))
        boxes = [(c, r, box(c * extent, r * extent, (c + 1) * extent, (r + 1) * extent)) for r in rows for c in cols]
        hits = shapely.intersects(np.array([b for _, _, b in boxes]), part_utm)
        for (c, r, b), hit in zip(boxes, hits, strict=True):
            if not hit:
                continue
            clip = part_utm.intersection(b)
            if clip.area > 0:
                cells.append(Cell(epsg, int(c), int(r), cell_size_px, resolution, clip))
    cells.sort(key=lambda cell: (cell.epsg, -cell.row, cell.col))
    return cells
