"""The simulated source: the scene simulator's files, made on first use, read as local GeoTIFFs."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
from shapely.geometry.base import BaseGeometry

from detectors.simulator.writer import SimulatedScene, simulate_scene
from pipeline.config import Window
from pipeline.paths import AOI_DIR
from pipeline.scene import Composite, ReadGrid
from pipeline.sources.local import LocalGeoTiffSource


def ensure_simulation(folder: Path, aoi_wgs84: BaseGeometry, seed: int) -> Path:
    """Simulate the scene into `folder` unless a finished simulation of this AOI and seed is there.

    The Hulun Lake outline and its protection zone from aoi/ shape the simulated shore, so the
    demo's water, shore and zones sit where the real ones are.
    """
    done = folder / "simulation.json"
    if done.exists():
        made = json.loads(done.read_text(encoding="utf-8"))
        if made.get("seed") == seed and made.get("aoi") == aoi_wgs84.wkt:
            return folder
    done.unlink(missing_ok=True)  # a half-written folder must never pass as finished
    lake = gpd.read_file(AOI_DIR / "hulun_lake.geojson").to_crs("EPSG:4326").geometry.iloc[0]
    zone = gpd.read_file(AOI_DIR / "hulun_lake_protection_zone.geojson").to_crs("EPSG:4326").geometry.iloc[0]
    scene: SimulatedScene = simulate_scene(folder, aoi_wgs84, seed, lake, zone)
    return scene.folder


class SimulatedSource:
    """Reads the simulator's GeoTIFFs through the local-file source, the same door users take."""

    def __init__(self, folder: Path, aoi_wgs84: BaseGeometry, seed: int) -> None:
        ensure_simulation(folder, aoi_wgs84, seed)
        self._local = LocalGeoTiffSource([str(folder / "imagery" / "*.tif")])
        self.bands = self._local.bands

    def composite(self, grid: ReadGrid, window: Window) -> Composite | None:
        return self._local.composite(grid, window)
