"""Turn a landscape and its planted changes into Sentinel-2 L2A-like acquisitions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from affine import Affine
from rasterio import features
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from detectors.bands import REFLECTANCE_BANDS, indices
from pipeline.simulator.fields import smooth_field
from pipeline.simulator.landscape import Cover, Landscape, SimulationGrid
from pipeline.simulator.plan import Distractor, PlantedChange
from pipeline.simulator.spectra import CLOUD_REFLECTANCE, draw

_HAZE_SHAPE = np.array([1.0, 0.8, 0.6, 0.35, 0.1, 0.05], dtype=np.float32)[:, None, None]


@dataclass
class RenderedAcquisition:
    """One simulated overpass: surface reflectance (bands, rows, cols) and its SCL band."""

    date: date
    reflectance: np.ndarray
    scl: np.ndarray | None  # Level-1C has no scene classification


def coverage(grid: SimulationGrid, geom: BaseGeometry, factor: int = 3) -> np.ndarray:
    """Fraction of each pixel covered by a geometry, so change edges are mixed pixels.

    Only the geometry's own window is rasterised at `factor` times the resolution.
    """
    out = np.zeros(grid.shape, dtype=np.float32)
    if geom.is_empty:
        return out
    inv = ~grid.transform
    minx, miny, maxx, maxy = geom.bounds
    c0, r0 = inv @ (minx, maxy)
    c1, r1 = inv @ (maxx, miny)
    r0, c0 = max(int(np.floor(r0)) - 1, 0), max(int(np.floor(c0)) - 1, 0)
    r1, c1 = min(int(np.ceil(r1)) + 1, grid.height), min(int(np.ceil(c1)) + 1, grid.width)
    if r1 <= r0 or c1 <= c0:
        return out
    h, w = r1 - r0, c1 - c0
    fine = grid.transform @ Affine.translation(c0, r0) @ Affine.scale(1 / factor)
    hi = features.rasterize([(geom, 1)], out_shape=(h * factor, w * factor), transform=fine, fill=0, dtype="uint8")
    out[r0:r1, c0:c1] = hi.reshape(h, factor, w, factor).mean(axis=(1, 3))
    return out


def surface_spectrum(name: str, rng: np.random.Generator) -> np.ndarray:
    """One measured spectrum of a named after-surface, mixtures such as a clearing included."""
    if name == "clearing":  # slash, litter and exposed soil with a few standing trees
        return 0.45 * draw("dry_grass", rng) + 0.35 * draw("steppe_soil", rng) + 0.2 * draw("forest", rng)
    return draw(name, rng)


def _patch_table(land: Landscape, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One measured spectrum per (cover, patch) for each ingredient surface, by pixel."""
    key = land.cover.astype(np.int64) * 10_000_000 + land.patches
    uniq, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(land.cover.shape)
    names = ("grass_green", "steppe_soil", "dry_grass", "forest", "crop", "black_soil",
             "built", "coal", "rock_pit")
    tables = {n: np.stack([draw(n, rng) for _ in uniq]) for n in names}
    return {n: np.moveaxis(t[inverse], -1, 0) for n, t in tables.items()}


def ground_reflectance(land: Landscape, changes: list[PlantedChange], distractors: list[Distractor],
                       epoch: str, rng: np.random.Generator, phenology_range: tuple[float, float] = (0.85, 1.1)
                       ) -> np.ndarray:
    """Surface reflectance of one epoch ("before" or "after"), before any atmosphere."""
    tables = _patch_table(land, np.random.default_rng(land.patches.size))  # same land both epochs
    cover = land.cover
    phenology = rng.uniform(*phenology_range)
    green = np.clip(land.green_fraction * phenology, 0, 1)
    cured = np.zeros_like(green)  # drought cures green grass into standing dry grass, not soil
    if epoch == "after":
        for d in distractors:
            if d.kind == "drought":
                cured = green * 0.5 * coverage(land.grid, d.geometry)
    steppe = (green - cured) * tables["grass_green"] + cured * tables["dry_grass"] + (1 - green) * (
        0.65 * tables["steppe_soil"] + 0.35 * tables["dry_grass"])
    water_var = 1 + 0.08 * smooth_field(cover.shape, 30, np.random.default_rng(7))
    water = draw("water", np.random.default_rng(11))[:, None, None] * water_var
    wet_frac = np.clip(0.45 + 0.15 * smooth_field(cover.shape, 8, np.random.default_rng(5)), 0.2, 0.7)
    wetland = wet_frac * water + (1 - wet_frac) * tables["grass_green"]

    out = steppe.astype(np.float32)
    for cls, value in ((Cover.FOREST, tables["forest"]), (Cover.CROPLAND, tables["crop"]),
                       (Cover.LAKE, water), (Cover.RIVER, water), (Cover.WETLAND, wetland),
                       (Cover.BUILT, tables["built"]), (Cover.COAL_MINE, tables["coal"]),
                       (Cover.ROCK_QUARRY, tables["rock_pit"])):
        sel = cover == cls
        out[:, sel] = np.broadcast_to(value, out.shape)[:, sel]

    texture = 1 + 0.05 * smooth_field(cover.shape, 1.2, np.random.default_rng(3)) \
        + 0.03 * smooth_field(cover.shape, 5, np.random.default_rng(4))
    out *= np.where((cover == Cover.LAKE) | (cover == Cover.RIVER), 1.0, texture)[None]
    if epoch == "after":
        for d in distractors:
            if d.kind == "fallow":
                f = coverage(land.grid, d.geometry)
                out = (1 - f) * out + f * tables["black_soil"]
            elif d.surface and d.kind != "drought":
                f = coverage(land.grid, d.geometry)
                out = (1 - f) * out + f * surface_spectrum(d.surface, rng)[:, None, None] * texture
        for c in changes:
            f = coverage(land.grid, c.geometry)
            spec = surface_spectrum(c.surface, rng)[:, None, None]
            out = (1 - f) * out + f * spec * texture
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _scl(refl: np.ndarray, cloud: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    ix = indices(refl)
    scl = np.where(ix["ndvi"] > 0.3, 4, 5).astype(np.uint8)
    scl[(ix["mndwi"] > 0.2) & (ix["ndvi"] < 0.1)] = 6
    scl[shadow > 0.2] = 3
    scl[cloud > 0.08] = 10  # semi-transparent edges: thin cirrus
    scl[cloud > 0.3] = 8
    scl[cloud > 0.65] = 9
    return scl


def acquire(ground: np.ndarray, when: date, rng: np.random.Generator, cloud_cover: float,
            shift_px: tuple[float, float] = (0.0, 0.0)) -> RenderedAcquisition:
    """Add illumination, haze, clouds with shadows, misregistration and sensor noise."""
    shape = ground.shape[1:]
    gain = rng.normal(1.0, 0.03) * rng.normal(1.0, 0.01, size=(ground.shape[0], 1, 1))
    haze = np.clip(0.5 + 0.5 * smooth_field(shape, 60, rng), 0, None) * rng.uniform(0, 0.02)
    refl = ground * gain + haze[None] * _HAZE_SHAPE
    if shift_px != (0.0, 0.0):
        refl = np.stack([ndimage.shift(b, shift_px, order=1, mode="nearest") for b in refl])
    cloud = np.zeros(shape, dtype=np.float32)
    shadow = np.zeros(shape, dtype=np.float32)
    if cloud_cover > 0:
        field = smooth_field(shape, 25, rng)
        thr = np.quantile(field, 1 - cloud_cover)
        cloud = np.clip((field - thr) / 0.8, 0, 1).astype(np.float32)
        shadow = np.roll(cloud, (int(rng.integers(15, 30)), int(rng.integers(15, 30))), axis=(0, 1))
        shadow = np.where(cloud > 0.05, 0, shadow)
    refl = refl * (1 - 0.65 * shadow)[None]
    refl = (1 - cloud)[None] * refl + cloud[None] * CLOUD_REFLECTANCE[:, None, None]
    refl = refl + rng.normal(0, 0.004, size=refl.shape).astype(np.float32)
    refl = np.clip(refl, 0.0, 1.0).astype(np.float32)
    assert refl.shape[0] == len(REFLECTANCE_BANDS)
    return RenderedAcquisition(date=when, reflectance=refl, scl=_scl(refl, cloud, shadow))


#: Rayleigh and aerosol path reflectance over a clean continental atmosphere, B02..B12, and the
#: two-way transmittance, for turning surface reflectance into a Level-1C-like top of atmosphere.
_PATH_REFLECTANCE = np.array([0.065, 0.045, 0.030, 0.015, 0.004, 0.002], dtype=np.float32)
_TRANSMITTANCE = np.array([0.80, 0.85, 0.88, 0.92, 0.95, 0.96], dtype=np.float32)


def toa_reflectance(surface: np.ndarray, turbidity: float) -> np.ndarray:
    """Surface reflectance (bands, ...) seen from the top of the atmosphere."""
    shape = (-1,) + (1,) * (surface.ndim - 1)
    toa = surface * _TRANSMITTANCE.reshape(shape) ** turbidity + _PATH_REFLECTANCE.reshape(shape) * turbidity
    return np.clip(toa, 0.0, 1.0).astype(np.float32)


def top_of_atmosphere(acq: RenderedAcquisition, rng: np.random.Generator) -> RenderedAcquisition:
    """The same overpass as Level-1C would record it: path radiance added, no SCL."""
    return RenderedAcquisition(date=acq.date, reflectance=toa_reflectance(acq.reflectance, rng.uniform(0.6, 1.6)),
                               scl=None)
