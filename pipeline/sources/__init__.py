"""Imagery sources behind one interface; `build_source` picks the one a configuration names."""

from __future__ import annotations

from shapely.geometry.base import BaseGeometry

from pipeline.config import LocalSource, RunConfig
from pipeline.sources.base import ImagerySource, read_scene
from pipeline.sources.local import LocalGeoTiffSource
from pipeline.sources.simulated import SimulatedSource

__all__ = ["ImagerySource", "build_source", "read_scene"]


def build_source(config: RunConfig, aoi_wgs84: BaseGeometry) -> ImagerySource:
    """The imagery source of a run configuration."""
    src = config.source
    if isinstance(src, LocalSource):
        return LocalGeoTiffSource(src.paths, src.radiometry, src.bands)
    return SimulatedSource(src.folder, aoi_wgs84, src.seed, src.difficulty)
