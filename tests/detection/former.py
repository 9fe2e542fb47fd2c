"""The whole-scene detection path as it was before the streaming engine, kept only as the
reference the engine's equivalence tests compare against."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np

from detectors.bands import REFLECTANCE_BANDS, indices
from detectors.categories import CATEGORY_IDS, CLASSIFIED_IDS, Zone
from detectors.features import CONTEXT_ZONES, FEATURE_NAMES, UNKNOWN_ZONE, standardise
from detectors.learned import SegmentationDetector
from detectors.zones import restrict_to_zones
from pipeline.detection.decision import decide
from pipeline.detection.tiling import TILING, Tiling, blend_weights, tile_grid
from pipeline.detection.vectorize import merge_across_cells, polygons_from_labels
from pipeline.sources.pair import read_pair


def feature_stack(before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                  zones: dict[Zone, np.ndarray]) -> np.ndarray:
    """The numpy feature stack the learned detector used to build on the host."""
    before = np.nan_to_num(before.astype(np.float32, copy=False))
    after = np.nan_to_num(after.astype(np.float32, copy=False))
    n, _, h, w = before.shape
    out = np.empty((n, len(FEATURE_NAMES), h, w), dtype=np.float32)
    nb = len(REFLECTANCE_BANDS)
    out[:, :nb] = before
    out[:, nb:2 * nb] = after
    out[:, 2 * nb:3 * nb] = np.log((np.clip(after, 0, None) + 0.01) / (np.clip(before, 0, None) + 0.01))
    ib, ia = indices(np.moveaxis(before, 1, 0)), indices(np.moveaxis(after, 1, 0))
    k = 3 * nb
    for name in ("ndvi", "ndwi", "mndwi", "nbr", "bsi", "brightness"):
        out[:, k] = ib[name]
        out[:, k + 6] = ia[name]
        k += 1
    k += 6
    out[:, k] = valid
    for j, zone in enumerate(CONTEXT_ZONES, start=k + 1):
        out[:, j] = zones[zone] if zone in zones else UNKNOWN_ZONE
    out[:, :k] *= valid[:, None]
    return out


def learned_predict(det: SegmentationDetector, before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                    zones: dict[Zone, np.ndarray]) -> np.ndarray:
    """SegmentationDetector.predict as it was: host features, numpy zones."""
    soft = det.probabilities(standardise(feature_stack(before, after, valid, zones), det._mean, det._std))
    out = np.zeros((before.shape[0], len(CATEGORY_IDS), *before.shape[2:]), dtype=np.float32)
    for i, k in enumerate(det._out_index):
        if k >= 0:
            out[:, i] = soft[:, k]
    for n in range(out.shape[0]):
        out[n, :-1] = restrict_to_zones(out[n, :-1], CLASSIFIED_IDS, {z: m[n] for z, m in zones.items()})
    if det._report_other:
        out[:, -1] = out[:, :-1].sum(axis=1)
    out[:, :-1][:, ~det._active] = 0.0
    return out * valid[:, None]


def predict_arrays(before: np.ndarray, after: np.ndarray, valid: np.ndarray, zones: dict[Zone, np.ndarray],
                   detector, tiling: Tiling = TILING) -> np.ndarray:
    """Tiles, batches and a full-scene accumulator, as before the engine."""
    predict = (lambda *a: learned_predict(detector, *a)) if isinstance(detector, SegmentationDetector) \
        else detector.predict
    height, width = valid.shape
    acc = np.zeros((len(detector.categories), height, width), dtype=np.float32)
    weight = np.zeros((height, width), dtype=np.float32)
    todo = [t for t in tile_grid(height, width, tiling.tile_size, tiling.overlap) if valid[t.slices].any()]
    for start in range(0, len(todo), tiling.batch_size):
        batch = todo[start:start + tiling.batch_size]
        probs = predict(np.stack([before[(slice(None), *t.slices)] for t in batch]),
                        np.stack([after[(slice(None), *t.slices)] for t in batch]),
                        np.stack([valid[t.slices] for t in batch]),
                        {z: np.stack([m[t.slices] for t in batch]) for z, m in zones.items()})
        for t, p in zip(batch, probs, strict=True):
            w = blend_weights(t, height, width, tiling.overlap)
            acc[(slice(None), *t.slices)] += p * w
            weight[t.slices] += w
    np.divide(acc, weight, out=acc, where=weight > 0)
    acc *= valid
    return acc


def detect_polygons(before: Path, after: Path, detector, zones=None, tiling: Tiling = TILING
                    ) -> tuple[np.ndarray, gpd.GeoDataFrame]:
    """Probabilities and change polygons of a pair read whole, as `detect` made them."""
    pair = read_pair(before, after, wanted=detector.bands)
    masks = zones.masks(pair.grid) if zones else {}
    probs = predict_arrays(pair.before, pair.after, pair.valid, masks, detector, tiling)
    resolution = abs(pair.grid.transform.a)
    labels = decide(probs, detector.categories, detector.thresholds, pair.valid, resolution)
    polys = polygons_from_labels(labels, probs, detector.categories, pair.grid.transform, pair.grid.crs, "pair",
                                 resolution)
    return probs, merge_across_cells([polys], resolution).to_crs(pair.grid.crs)
