"""A simulated steppe-lake landscape: land cover, patches and context zones on a UTM grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from scipy import ndimage
from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from detectors.categories import Zone
from pipeline.simulator.fields import blob, smooth_field, voronoi_patches


class Cover(IntEnum):
    """Land cover classes of the simulated landscape."""

    STEPPE = 0
    FOREST = 1
    CROPLAND = 2
    LAKE = 3
    WETLAND = 4
    RIVER = 5
    BUILT = 6
    COAL_MINE = 7
    ROCK_QUARRY = 8


@dataclass
class SimulationGrid:
    """A north-up pixel grid in a projected CRS."""

    crs: str
    transform: Affine
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def resolution(self) -> float:
        return float(self.transform.a)

    def rasterize(self, geom: BaseGeometry | None) -> np.ndarray:
        """Pixels whose centre falls inside a geometry."""
        if geom is None or geom.is_empty:
            return np.zeros(self.shape, dtype=bool)
        return features.rasterize([(geom, 1)], out_shape=self.shape, transform=self.transform,
                                  fill=0, dtype="uint8").astype(bool)

    def vectorize(self, mask: np.ndarray) -> BaseGeometry:
        """The polygons covering a boolean mask."""
        polys = [shape(g) for g, v in features.shapes(mask.astype("uint8"), mask=mask,
                                                      transform=self.transform) if v]
        return shapely.union_all(polys) if polys else MultiPolygon()

    def xy(self, row: float, col: float) -> tuple[float, float]:
        x, y = self.transform @ (col + 0.5, row + 0.5)
        return float(x), float(y)


@dataclass
class Landscape:
    """Land cover with patch ids, steppe vegetation cover and the context zones as polygons."""

    grid: SimulationGrid
    cover: np.ndarray
    patches: np.ndarray
    green_fraction: np.ndarray
    inside: np.ndarray  # the AOI, where planted changes must fall to be scored
    zones: dict[Zone, BaseGeometry] = field(default_factory=dict)

    def zone_mask(self, zone: Zone) -> np.ndarray:
        if zone is Zone.EVERYWHERE:
            return np.ones(self.grid.shape, dtype=bool)
        return self.grid.rasterize(self.zones.get(zone))


def _random_pixel(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("the simulated extent is too small to place every land cover type")
    i = rng.integers(rows.size)
    return int(rows[i]), int(cols[i])


def _meandering_river(start: tuple[float, float], end: tuple[float, float], rng: np.random.Generator) -> LineString:
    n = 40
    t = np.linspace(0, 1, n)
    x = start[0] + (end[0] - start[0]) * t
    y = start[1] + (end[1] - start[1]) * t
    length = np.hypot(end[0] - start[0], end[1] - start[1])
    phase = rng.uniform(0, 2 * np.pi)
    wiggle = 0.06 * length * np.sin(2 * np.pi * t * rng.uniform(2, 4) + phase) * np.sin(np.pi * t)
    nx, ny = -(end[1] - start[1]) / length, (end[0] - start[0]) / length
    return LineString(np.column_stack([x + wiggle * nx, y + wiggle * ny]))


def make_landscape(grid: SimulationGrid, aoi: BaseGeometry, lake: BaseGeometry | None, rng: np.random.Generator,
                   lake_zone: BaseGeometry | None = None) -> Landscape:
    """Lay out lake, river, wetland, forest, black-soil cropland, a village and two mines.

    The lake is the real outline where one is given; everything else is placed at random on
    land, far enough from the shore, so different seeds give different landscapes.
    """
    res = grid.resolution
    cover = np.full(grid.shape, Cover.STEPPE, dtype=np.uint8)
    lake_mask = grid.rasterize(lake)
    cover[lake_mask] = Cover.LAKE
    shore_dist = ndimage.distance_transform_edt(~lake_mask) * res if lake_mask.any() else \
        np.full(grid.shape, 1e9, dtype=np.float32)
    edge = np.zeros(grid.shape, dtype=bool)
    m = int(800 / res)
    edge[m:-m, m:-m] = True
    inland = (shore_dist > 2500) & edge
    zones: dict[Zone, BaseGeometry] = {}

    # river: from the far side of the extent to the lake shore (or across the extent)
    r0 = _random_pixel(inland, rng)
    start = grid.xy(r0[0], 0 if r0[1] < grid.width / 2 else grid.width - 1)
    if lake_mask.any():
        near_shore = (shore_dist > 0) & (shore_dist < 3 * res) & edge
        rr, cc = _random_pixel(near_shore, rng)
        end = grid.xy(rr, cc)
    else:
        end = grid.xy(int(rng.integers(grid.height)), grid.width - 1 if r0[1] < grid.width / 2 else 0)
    river_line = _meandering_river(start, end, rng)
    channel = river_line.buffer(rng.uniform(18, 28))
    corridor = river_line.buffer(220)
    if lake is not None:
        channel = channel.difference(lake)
        corridor = corridor.difference(lake)
    zones[Zone.RIVER] = corridor

    # wetland: patches of the shore belt and the river mouth
    wet_field = smooth_field(grid.shape, 25, rng)
    river_mouth = grid.rasterize(river_line.interpolate(1.0, normalized=True).buffer(1200))
    river_side = grid.rasterize(river_line.buffer(900))
    wetland = (((shore_dist > 0) & (shore_dist < 700) & (wet_field > -0.2))
               | (river_mouth & (wet_field > 0.3))
               | (river_side & (wet_field > 0.9))) & ~lake_mask
    wetland = ndimage.binary_opening(wetland, iterations=2)
    cover[wetland] = Cover.WETLAND
    zones[Zone.WETLAND] = grid.vectorize(wetland)

    # forest: a few stands inland (larch-birch of the Khingan foothills)
    forest_field = smooth_field(grid.shape, 40, rng)
    fr, fc = _random_pixel(inland, rng)
    forest_area = grid.rasterize(blob(grid.xy(fr, fc), 9e6, rng))
    forest = forest_area & (forest_field > -0.6) & (cover == Cover.STEPPE)
    forest = ndimage.binary_opening(forest, iterations=3)
    cover[forest] = Cover.FOREST
    zones[Zone.FOREST] = grid.vectorize(forest)

    # black-soil cropland: a block of rectangular parcels
    crop_pick = inland & ~ndimage.binary_dilation(forest_area, iterations=int(500 / res))
    cr, cc_ = _random_pixel(crop_pick, rng)
    cx, cy = grid.xy(cr, cc_)
    block = affinity.rotate(Polygon([(-1800, -1300), (1800, -1300), (1800, 1300), (-1800, 1300)]),
                            rng.uniform(-20, 20))
    block = affinity.translate(block, cx, cy)
    crop = grid.rasterize(block) & (cover == Cover.STEPPE)
    cover[crop] = Cover.CROPLAND
    zones[Zone.BLACK_SOIL] = grid.vectorize(crop)

    # village and two open pits with their mining district
    free = (cover == Cover.STEPPE) & edge & (shore_dist > 1500)
    vr, vc = _random_pixel(free, rng)
    village = blob(grid.xy(vr, vc), 4e5, rng)
    cover[grid.rasterize(village) & (cover == Cover.STEPPE)] = Cover.BUILT
    pits = []
    for kind, area in ((Cover.COAL_MINE, 4e5), (Cover.ROCK_QUARRY, 2e5)):
        free = (cover == Cover.STEPPE) & inland
        pr, pc = _random_pixel(free, rng)
        pit = blob(grid.xy(pr, pc), area, rng)
        cover[grid.rasterize(pit) & (cover == Cover.STEPPE)] = kind
        pits.append(pit)
    zones[Zone.MINING_DISTRICT] = shapely.union_all([p.buffer(1500) for p in pits])

    cover[grid.rasterize(channel)] = Cover.RIVER
    zones[Zone.GRASSLAND] = grid.vectorize(cover == Cover.STEPPE)
    if lake_zone is not None:
        zones[Zone.LAKE] = lake_zone

    patches = voronoi_patches(grid.shape, 45, rng)
    crop_parcels = (np.floor_divide(np.arange(grid.width), 30)[None, :] * 1000
                    + np.floor_divide(np.arange(grid.height), 60)[:, None])
    patches = np.where(cover == Cover.CROPLAND, crop_parcels + 100000, patches).astype(np.int32)
    green = np.clip(0.55 + 0.12 * smooth_field(grid.shape, 20, rng), 0.3, 0.8).astype(np.float32)
    inside = grid.rasterize(aoi.buffer(-200))
    return Landscape(grid=grid, cover=cover, patches=patches, green_fraction=green, inside=inside, zones=zones)
