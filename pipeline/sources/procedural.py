"""Imagery made on request: any grid's pixels computed from a hash of their world coordinates.

A region-scale run (a whole league, tens of thousands of cells) needs imagery that costs no disk
and no download, yet looks enough like the steppe for the detectors to do real work: grass of
varying greenness, forest, lakes, crop parcels, and in the later window some rectangles of new
surface (yards, pits, ploughed land, roofs). Every value is a function of the pixel's position
in its UTM zone, the seed and the date, so a cell's halo sees exactly what its neighbour's core
sees, a run that is repeated or resumed sees the same imagery, and nothing is ever written.
The surfaces are medians of the simulator's measured spectra (pipeline/simulator/spectra.py).
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache

import numpy as np
from rasterio.crs import CRS

from detectors.bands import REFLECTANCE_BANDS
from pipeline.config import DateRange
from pipeline.simulator.spectra import WATER_REFLECTANCE, surface_spectra
from pipeline.sources.scene import Composite, ReadGrid

#: The surfaces new changes take, and the half-sizes of their rectangles (m): 80-220 m across,
#: above every category's mapping unit.
CHANGE_SURFACES: tuple[str, ...] = ("gravel_yard", "rock_pit", "plough", "built")
CHANGE_HALF_SIZE_M = (40.0, 110.0)
#: One change may sit in each square of this size (m), with probability `change_density`.
CHANGE_SPACING_M = 2000.0
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: uint64 in, well-scrambled uint64 out (wrapping arithmetic)."""
    z = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z & _MASK64


def uniform_hash(key: int, *coords: np.ndarray | int) -> np.ndarray:
    """A uniform number in [0, 1) for each integer coordinate tuple, the same wherever it is computed."""
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(key % 2**63, dtype=np.uint64))
        for c in coords:
            h = _mix(h ^ (np.asarray(c, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _key(*parts: int) -> int:
    """One integer from several (seed, zone, layer, date), for `uniform_hash`."""
    return int(uniform_hash(0, *parts) * 2**62)


def value_noise(xs: np.ndarray, ys: np.ndarray, spacing: float, key: int) -> np.ndarray:
    """Smooth noise in [-1, 1] on the grid xs (columns) by ys (rows): random values on a world lattice
    of `spacing` metres, interpolated with a smoothstep, so it is continuous across cells."""
    gx, gy = xs / spacing, ys / spacing
    i0, j0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    ii = np.arange(i0.min(), i0.max() + 2)
    jj = np.arange(j0.min(), j0.max() + 2)
    lattice = uniform_hash(key, jj[:, None], ii[None, :]) * 2 - 1  # (rows, cols) of the lattice
    fx, fy = gx - i0, gy - j0
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    c, r = (i0 - ii[0])[None, :], (j0 - jj[0])[:, None]
    top = lattice[r, c] * (1 - sx)[None, :] + lattice[r, c + 1] * sx[None, :]
    bottom = lattice[r + 1, c] * (1 - sx)[None, :] + lattice[r + 1, c + 1] * sx[None, :]
    return (top * (1 - sy)[:, None] + bottom * sy[:, None]).astype(np.float32)


@cache
def _spectrum(name: str) -> np.ndarray:
    """A surface's median measured spectrum, (bands, 1, 1)."""
    values = WATER_REFLECTANCE if name == "water" else np.median(surface_spectra(name), axis=0)
    return np.asarray(values, dtype=np.float32)[:, None, None]


def acquisition_date(window: DateRange) -> date:
    """The one overpass a window holds: its middle day."""
    return window.start + timedelta(days=(window.end - window.start).days // 2)


class ProceduralSource:
    """Steppe-like L2A reflectance computed for any requested grid; one cloud-masked overpass per window."""

    bands = REFLECTANCE_BANDS

    def __init__(self, seed: int = 0, cloud_cover: float = 0.05, change_density: float = 0.5,
                 changes_from: date = date(2025, 1, 1)) -> None:
        self.seed, self.cloud_cover, self.change_density = seed, cloud_cover, change_density
        self.changes_from = changes_from
        sample = np.arange(0, 400_000, 1_000.0)  # a wide sample of the cloud field, to turn cover into a threshold
        field = self._cloud_field(sample, sample, 0, 0)
        self._cloud_threshold = float(np.quantile(field, 1 - cloud_cover)) if cloud_cover > 0 else np.inf

    def _cloud_field(self, xs: np.ndarray, ys: np.ndarray, epsg: int, day: int) -> np.ndarray:
        key = _key(self.seed, epsg, 9, day)
        return value_noise(xs, ys, 2500.0, key) + 0.5 * value_noise(xs, ys, 600.0, key + 1)

    def composite(self, grid: ReadGrid, window: DateRange) -> Composite | None:
        """The window's overpass on the grid: clouds are no data, everything else is seen."""
        when = acquisition_date(window)
        reflectance = self.reflectance(grid, when)
        xs, ys = _centres(grid)
        valid = self._cloud_field(xs, ys, _epsg(grid.crs), when.toordinal()) <= self._cloud_threshold
        reflectance[:, ~valid] = np.nan
        return Composite(reflectance=reflectance, valid=valid, dates=[when], observations=valid.astype(np.uint8))

    def acquisition_reads(self, grid: ReadGrid, window: DateRange) -> list[tuple[date, np.ndarray]]:
        """The window's single overpass, for the lead confidence's count of confirming acquisitions."""
        composite = self.composite(grid, window)
        return [(composite.dates[0], composite.reflectance)]

    def reflectance(self, grid: ReadGrid, when: date) -> np.ndarray:
        """Cloud-free surface reflectance (bands, rows, cols) on `when`; the changes are there from
        `changes_from` on."""
        xs, ys = _centres(grid)
        k = _key(self.seed, _epsg(grid.crs))

        def n(spacing: float, layer: int) -> np.ndarray:
            return value_noise(xs, ys, spacing, k + layer)

        season = 0.9 + 0.15 * uniform_hash(k, when.year)
        green = np.clip((0.6 + 0.25 * n(300.0, 1) + 0.1 * n(60.0, 2)) * season, 0.1, 0.95)[None]
        out = green * _spectrum("grass_green") + (1 - green) * (
            0.65 * _spectrum("steppe_soil") + 0.35 * _spectrum("dry_grass"))
        macro = n(4000.0, 3) + 0.5 * n(1000.0, 4)
        parcels = uniform_hash(k + 5, np.floor(ys / 400.0)[:, None], np.floor(xs / 400.0)[None, :])
        crop = (parcels < 0.25) & (macro < 0.2)
        forest = macro > 0.55
        water = n(3000.0, 6) + 0.3 * n(500.0, 7) < -0.75
        for mask, name in ((crop, "crop"), (forest, "forest"), (water, "water")):
            out = np.where(mask[None], _spectrum(name), out)
        texture = 1 + 0.04 * n(20.0, 8)
        out = np.where(water[None], out, out * texture[None])
        if when >= self.changes_from:
            out = self._changes(out, xs, ys, k, water)
        pixel = uniform_hash(k + when.toordinal(), np.floor(ys)[:, None], np.floor(xs)[None, :])
        out = out + ((pixel - 0.5) * 0.008).astype(np.float32)[None]  # sensor noise, the same in every band
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def _changes(self, out: np.ndarray, xs: np.ndarray, ys: np.ndarray, k: int, water: np.ndarray) -> np.ndarray:
        """Rotated rectangles of new surface, at most one per CHANGE_SPACING_M square, none on water."""
        s, reach = CHANGE_SPACING_M, CHANGE_HALF_SIZE_M[1] * 1.5
        for j in range(int(np.floor((ys.min() - reach) / s)), int(np.floor((ys.max() + reach) / s)) + 1):
            for i in range(int(np.floor((xs.min() - reach) / s)), int(np.floor((xs.max() + reach) / s)) + 1):
                u = uniform_hash(k + 10, j, i, np.arange(7))
                if u[0] >= self.change_density:
                    continue
                cx, cy = (i + 0.15 + 0.7 * u[1]) * s, (j + 0.15 + 0.7 * u[2]) * s
                lo, hi = CHANGE_HALF_SIZE_M
                a, b, angle = lo + (hi - lo) * u[3], lo + (hi - lo) * u[4], np.pi * u[5]
                cols = np.flatnonzero(np.abs(xs - cx) <= reach)
                rows = np.flatnonzero(np.abs(ys - cy) <= reach)
                if not len(cols) or not len(rows):
                    continue
                dx, dy = xs[cols][None, :] - cx, ys[rows][:, None] - cy
                inside = ((np.abs(dx * np.cos(angle) + dy * np.sin(angle)) <= a)
                          & (np.abs(-dx * np.sin(angle) + dy * np.cos(angle)) <= b))
                window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
                inside &= ~water[window]
                surface = _spectrum(CHANGE_SURFACES[int(u[6] * len(CHANGE_SURFACES))])
                out[(slice(None), *window)] = np.where(inside[None], surface, out[(slice(None), *window)])
        return out


def _centres(grid: ReadGrid) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of the pixel centres of a north-up grid: columns' x, rows' y."""
    t = grid.transform
    return t.c + (np.arange(grid.width) + 0.5) * t.a, t.f + (np.arange(grid.height) + 0.5) * t.e


@cache
def _epsg(crs: str) -> int:
    return CRS.from_user_input(crs).to_epsg() or 0
