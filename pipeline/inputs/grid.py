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

from detectors.bands import REFLECTANCE_BANDS


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


def _zone_parts(aoi_wgs84: BaseGeometry) -> list[tuple[int, BaseGeometry]]:
    """The AOI's part in each UTM zone, in that zone's metres."""
    # densify first so long straight edges follow their true course in the projected grid
    return [(epsg, gpd.GeoSeries([shapely.segmentize(part, 0.01)], crs="EPSG:4326").to_crs(epsg).iloc[0])
            for epsg, part in _zone_strips(aoi_wgs84)]


def _span(lo: float, hi: float, extent: float) -> tuple[int, int]:
    """First and one-past-last grid index of cells of `extent` metres covering [lo, hi]."""
    return math.floor(lo / extent), math.ceil(hi / extent)


@dataclass(frozen=True)
class GridPlan:
    """What a run over an AOI would process, counted from each zone's extent before any cell is made.

    A run checks this against its limits first, so a mistyped resolution is refused at once
    instead of filling the memory with cells; the counts are those of the cells whose squares
    span the AOI's extent in each zone, so they are never below what `make_cells` makes.
    """

    cell_size_px: int
    resolution: float
    cells_per_zone: dict[int, int]  # EPSG code -> cells
    area_km2: float

    @property
    def cells(self) -> int:
        return sum(self.cells_per_zone.values())

    @property
    def pixels(self) -> int:
        """Pixels per date over all cells (halo not counted)."""
        return self.cells * self.cell_size_px ** 2

    @property
    def bytes_per_date(self) -> int:
        """Imagery of one date: the detector's bands and the scene classification, 2 bytes a sample."""
        return self.pixels * (len(REFLECTANCE_BANDS) + 1) * 2

    def summary(self) -> str:
        """The figures a run prints before it starts."""
        zones = ", ".join(f"EPSG:{epsg} {n:,}" for epsg, n in sorted(self.cells_per_zone.items()))
        extent_km = self.cell_size_px * self.resolution / 1000
        return (f"AOI {self.area_km2:,.0f} km²: up to {self.cells:,} cells of {self.cell_size_px} px at "
                f"{self.resolution:g} m ({extent_km:g} km) by UTM zone: {zones}; {self.pixels:,} pixels and about "
                f"{self.bytes_per_date / 1e9:,.3g} GB of imagery per date")


def plan_grid(aoi_wgs84: BaseGeometry, cell_size_px: int = 512, resolution: float = 10.0) -> GridPlan:
    """Count the cells and pixels of a run by arithmetic on the AOI's extent in each zone: instant,
    whatever the resolution, because no cell is made."""
    extent = cell_size_px * resolution
    per_zone: dict[int, int] = {}
    area = 0.0
    for epsg, part in _zone_parts(aoi_wgs84):
        minx, miny, maxx, maxy = part.bounds
        (c0, c1), (r0, r1) = _span(minx, maxx, extent), _span(miny, maxy, extent)
        per_zone[epsg] = per_zone.get(epsg, 0) + (c1 - c0) * (r1 - r0)
        area += part.area / 1e6
    return GridPlan(cell_size_px, resolution, per_zone, area)


def make_cells(aoi_wgs84: BaseGeometry, cell_size_px: int = 512, resolution: float = 10.0) -> list[Cell]:
    """All cells that intersect the AOI, each in its own UTM zone, in a stable order.

    Cells wholly inside the AOI take their square as is; only those on its boundary are clipped,
    all at once, so a province-sized AOI with a detailed boundary takes seconds.
    """
    cells: list[Cell] = []
    extent = cell_size_px * resolution
    for epsg, part_utm in _zone_parts(aoi_wgs84):
        shapely.prepare(part_utm)
        minx, miny, maxx, maxy = part_utm.bounds
        cols, rows = np.meshgrid(np.arange(*_span(minx, maxx, extent)), np.arange(*_span(miny, maxy, extent)))
        cols, rows = cols.ravel(), rows.ravel()
        squares = shapely.box(cols * extent, rows * extent, (cols + 1) * extent, (rows + 1) * extent)
        inside = shapely.contains_properly(part_utm, squares)
        edge = ~inside & shapely.intersects(part_utm, squares)
        parts = squares.copy()
        parts[edge] = shapely.intersection(squares[edge], part_utm)
        keep = inside | (edge & (shapely.area(parts) > 0))
        cells += [Cell(epsg, int(c), int(r), cell_size_px, resolution, p)
                  for c, r, p in zip(cols[keep], rows[keep], parts[keep], strict=True)]
    cells.sort(key=lambda cell: (cell.epsg, -cell.row, cell.col))
    return cells
