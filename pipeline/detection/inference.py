"""Probabilities of a scene held in memory (a run's cell, a calibration scene), through the engine."""

from __future__ import annotations

import numpy as np

from detectors.categories import Zone
from detectors.interface import Detector
from pipeline.detection.engine import Chunk, Engine, EngineOptions, InferenceStats, array_reader
from pipeline.detection.tiling import TILING, Tiling
from pipeline.errors import InputError
from pipeline.sources.scene import Scene


def predict_scene(scene: Scene, zones: dict[Zone, np.ndarray], detector: Detector, tiling: Tiling = TILING,
                  options: EngineOptions | None = None) -> tuple[np.ndarray, InferenceStats]:
    """Probabilities (categories, rows, cols) for the whole scene grid; tiles with no valid pixel are skipped."""
    if scene.bands != detector.bands:
        raise InputError(None, "detection.detector", f"detector {detector.name} reads bands "
                         f"{', '.join(detector.bands)} in that order, the imagery source gives "
                         f"{', '.join(scene.bands)}",
                         "use a detector made for these bands (detector: baseline reads the six Sentinel-2 bands)")
    return predict_arrays(scene.before.reflectance, scene.after.reflectance, scene.valid, zones, detector, tiling,
                          options)


def predict_arrays(before: np.ndarray, after: np.ndarray, valid: np.ndarray, zones: dict[Zone, np.ndarray],
                   detector: Detector, tiling: Tiling = TILING, options: EngineOptions | None = None
                   ) -> tuple[np.ndarray, InferenceStats]:
    """Probabilities (categories, rows, cols) from reflectance stacks (bands, rows, cols) of both dates,
    through the streaming engine (a cell fits in memory: the chunks are gathered into one array)."""
    height, width = valid.shape
    out = np.zeros((len(detector.categories), height, width), dtype=np.float32)

    def gather(chunk: Chunk) -> None:
        out[(slice(None), *chunk.window)] = chunk.probs

    stats = Engine(detector, tiling, options).run(array_reader(before, after, valid, zones), height, width, gather)
    return out, stats
