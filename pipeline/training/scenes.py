"""Simulated scenes as training arrays, read through the same source the pipeline uses.

Each scene is simulated to GeoTIFFs and composited by `LocalGeoTiffSource`, so the model
trains on exactly what it will be given at run time (SCL masking, median compositing, L1C or
L2A radiometry). Truth polygons become a label raster (0 background, 1.. categories) and the
zone layers become the context channels. A scene's arrays are cached as one .npz.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from detectors.categories import CLASSIFIED_IDS
from detectors.features import CONTEXT_ZONES
from pipeline.atomic import atomic_path
from pipeline.config import DateRange
from pipeline.inputs.aoi import hulun_lake
from pipeline.simulator.settings import SceneSettings
from pipeline.simulator.writer import simulate_scene
from pipeline.sources.local import LocalGeoTiffSource
from pipeline.sources.scene import ReadGrid

SCENE_SIZE_M = 10_000.0


@dataclass
class SceneArrays:
    """One scene as the sampler needs it."""

    before: np.ndarray  # (bands, H, W) float32 reflectance, NaN unseen
    after: np.ndarray
    valid: np.ndarray  # (H, W) bool
    zones: np.ndarray  # (len(CONTEXT_ZONES), H, W) uint8
    labels: np.ndarray  # (H, W) uint8: 0 background, 1 + index in CLASSIFIED_IDS
    distractors: np.ndarray  # (H, W) bool: changes that are not leads

    @classmethod
    def load(cls, path: Path) -> SceneArrays:
        with np.load(path) as z:
            return cls(**{k: z[k] for k in ("valid", "zones", "labels", "distractors")},
                       before=z["before"].astype(np.float32), after=z["after"].astype(np.float32))


def random_aoi(rng: np.random.Generator, lake: BaseGeometry) -> BaseGeometry:
    """A square AOI on the Hulun Lake shore (most scenes) or out in the steppe (no lake)."""
    ring = lake.exterior
    x, y = ring.interpolate(rng.uniform(0, ring.length)).coords[0]
    cx, cy = lake.centroid.coords[0]
    away = np.array([x - cx, y - cy])
    away /= np.linalg.norm(away) + 1e-12
    inland_km = rng.uniform(1.0, 4.0) if rng.random() < 0.8 else rng.uniform(15.0, 40.0)
    km_deg = np.array([111.32 * math.cos(math.radians(y)), 110.57])
    x, y = np.array([x, y]) + away * inland_km / km_deg
    half = SCENE_SIZE_M / 2000.0 / km_deg
    return box(x - half[0], y - half[1], x + half[0], y + half[1])


def scene_key(settings: SceneSettings) -> str:
    """A short hash of what makes a scene: its settings and the simulator's surface and shape lists."""
    from pipeline.simulator.settings import SHAPE_CHOICES, SURFACE_CHOICES

    text = json.dumps([settings.to_dict(), SURFACE_CHOICES, SHAPE_CHOICES], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def make_scene(folder: Path, seed: int, settings: SceneSettings) -> Path:
    """Simulate one scene and cache its arrays as `<folder>/scene-<key>.npz`; a cached scene made
    with the same settings and surface lists is reused."""
    out = folder / f"scene-{scene_key(settings)}.npz"
    if out.exists():
        return out
    rng = np.random.default_rng(seed)
    lake, lake_zone = hulun_lake()
    for attempt in range(5):  # a landscape with no room for every planted change: move the AOI
        try:
            sim = simulate_scene(folder / "files", random_aoi(rng, lake), seed + 100_000 * attempt, lake,
                                 lake_zone, settings=settings)
            break
        except ValueError:
            if attempt == 4:
                raise
    with rasterio.open(sim.imagery[0]) as src:
        grid = ReadGrid(crs=src.crs.to_string(), transform=src.transform, width=src.width, height=src.height)
    source = LocalGeoTiffSource([str(p) for p in sim.imagery])
    tl = sim.timeline
    before = source.composite(grid, DateRange(start=min(tl.before), end=max(tl.before)))
    after = source.composite(grid, DateRange(start=min(tl.after), end=max(tl.after)))
    truth = gpd.read_file(sim.truth, layer="changes")
    labels = np.zeros((grid.height, grid.width), dtype=np.uint8)
    for k, cat in enumerate(CLASSIFIED_IDS, start=1):
        labels[grid.mask(list(truth.geometry[truth.category == cat]))] = k
    distractors = grid.mask(list(gpd.read_file(sim.truth, layer="distractors").geometry))
    zone_table = gpd.read_file(sim.zones)
    lake_zone_utm = gpd.GeoSeries([lake_zone], crs="EPSG:4326").to_crs(grid.crs)
    zones = np.zeros((len(CONTEXT_ZONES), grid.height, grid.width), dtype=np.uint8)
    for j, zone in enumerate(CONTEXT_ZONES):
        geoms = list(lake_zone_utm) if zone.value == "lake" else list(zone_table.geometry[zone_table.zone == zone])
        zones[j] = grid.mask(geoms)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, before=before.reflectance.astype(np.float16),
                                after=after.reflectance.astype(np.float16), valid=before.valid & after.valid,
                                zones=zones, labels=labels, distractors=distractors)
    return out


def settings_for(seed: int) -> SceneSettings:
    """The training-distribution settings of a training or validation scene, fixed by its seed."""
    from pipeline.simulator.settings import training_settings

    return training_settings(np.random.default_rng([seed, 1]))


def _make_one(args: tuple[Path, int]) -> Path:
    folder, seed = args
    return make_scene(folder / str(seed), seed, settings_for(seed))


def make_scenes(folder: Path, seeds: tuple[int, ...], workers: int = 2) -> list[Path]:
    """Every scene of `seeds` under `folder`, simulated in parallel; cached scenes are reused."""
    from multiprocessing import get_context

    from tqdm import tqdm

    todo = [(folder, s) for s in seeds]
    with get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(_make_one, todo), total=len(todo), desc="training scenes", unit="scene",
                         disable=None))
