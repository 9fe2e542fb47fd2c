"""The simulated source: the scene simulator's files, made on first use, read as local GeoTIFFs."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
from shapely.geometry.base import BaseGeometry

from pipeline.config import DateRange
from pipeline.inputs.aoi import hulun_lake
from pipeline.simulator.settings import HELD_OUT, SceneSettings
from pipeline.simulator.writer import SimulatedScene, simulate_scene
from pipeline.sources.local import LocalGeoTiffSource
from pipeline.sources.scene import Composite, ReadGrid


def ensure_simulation(folder: Path, aoi_wgs84: BaseGeometry, seed: int, difficulty: str = "demo") -> Path:
    """Simulate the scene into `folder` unless a finished simulation of this AOI and seed is there.

    The Hulun Lake outline and its protection zone from aoi/ shape the simulated shore, so the
    demo's water, shore and zones sit where the real ones are.
    """
    settings = HELD_OUT if difficulty == "held_out" else SceneSettings()
    done = folder / "simulation.json"
    if done.exists():
        made = json.loads(done.read_text(encoding="utf-8"))
        wanted = {"seed": seed, "aoi": aoi_wgs84.wkt, "settings": json.loads(json.dumps(settings.to_dict()))}
        if all(made.get(k) == v for k, v in wanted.items()):
            return folder
    done.unlink(missing_ok=True)  # a half-written folder must never pass as finished
    lake, zone = hulun_lake()
    scene: SimulatedScene = simulate_scene(folder, aoi_wgs84, seed, lake, zone, settings=settings)
    return scene.folder


class SimulatedSource:
    """Reads the simulator's GeoTIFFs through the local-file source, the same door users take."""

    def __init__(self, folder: Path, aoi_wgs84: BaseGeometry, seed: int, difficulty: str = "demo") -> None:
        ensure_simulation(folder, aoi_wgs84, seed, difficulty)
        self._local = LocalGeoTiffSource([str(folder / "imagery" / "*.tif")])
        self.bands = self._local.bands

    def composite(self, grid: ReadGrid, window: DateRange) -> Composite | None:
        return self._local.composite(grid, window)

    def acquisition_reads(self, grid: ReadGrid, window: DateRange) -> list[tuple[date, np.ndarray]]:
        return self._local.acquisition_reads(grid, window)
