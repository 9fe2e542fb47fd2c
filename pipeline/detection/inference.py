"""Run a detector over a scene tile by tile, in batches, and stitch the probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.categories import Zone
from detectors.interface import Detector
from pipeline.detection.tiling import TILING, Tile, Tiling, blend_weights, tile_grid
from pipeline.errors import InputError
from pipeline.sources.scene import Scene


@dataclass
class InferenceStats:
    """Tiles run and tiles skipped for having no valid pixel, for the run table."""

    tiles: int = 0
    tiles_without_data: int = 0


def predict_scene(scene: Scene, zones: dict[Zone, np.ndarray], detector: Detector, tiling: Tiling = TILING
                  ) -> tuple[np.ndarray, InferenceStats]:
    """Probabilities (categories, rows, cols) for the whole scene grid; tiles with no valid pixel are skipped."""
    if scene.bands != detector.bands:
        raise InputError(None, "detection.detector", f"detector {detector.name} reads bands "
                         f"{', '.join(detector.bands)} in that order, the imagery source gives "
                         f"{', '.join(scene.bands)}",
                         "use a detector made for these bands (detector: baseline reads the six Sentinel-2 bands)")
    return predict_arrays(scene.before.reflectance, scene.after.reflectance, scene.valid, zones, detector, tiling)


def predict_arrays(before: np.ndarray, after: np.ndarray, valid: np.ndarray, zones: dict[Zone, np.ndarray],
                   detector: Detector, tiling: Tiling = TILING) -> tuple[np.ndarray, InferenceStats]:
    """Probabilities (categories, rows, cols) from reflectance stacks (bands, rows, cols) of both dates."""
    height, width = valid.shape
    acc = np.zeros((len(detector.categories), height, width), dtype=np.float32)
    weight = np.zeros((height, width), dtype=np.float32)
    stats = InferenceStats()
    tiles = tile_grid(height, width, tiling.tile_size, tiling.overlap)
    batch_size, overlap = tiling.batch_size, tiling.overlap
    stats.tiles = len(tiles)
    todo = [t for t in tiles if valid[t.slices].any()]
    stats.tiles_without_data = len(tiles) - len(todo)
    for start in range(0, len(todo), batch_size):
        batch: list[Tile] = todo[start:start + batch_size]
        tile_before = np.stack([before[(slice(None), *t.slices)] for t in batch])
        tile_after = np.stack([after[(slice(None), *t.slices)] for t in batch])
        mask = np.stack([valid[t.slices] for t in batch])
        tile_zones = {z: np.stack([m[t.slices] for t in batch]) for z, m in zones.items()}
        probs = detector.predict(tile_before, tile_after, mask, tile_zones)
        for t, p in zip(batch, probs, strict=True):
            w = blend_weights(t, height, width, overlap)
            acc[(slice(None), *t.slices)] += p * w
            weight[t.slices] += w
    np.divide(acc, weight, out=acc, where=weight > 0)
    acc *= valid
    return acc, stats
