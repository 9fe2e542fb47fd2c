"""Decision thresholds chosen on validation scenes (never held-out ones), and the scores they give."""

from __future__ import annotations

import numpy as np

from detectors.categories import CLASSIFIED_IDS
from detectors.features import CONTEXT_ZONES
from pipeline.detection.inference import predict_arrays
from pipeline.training.scenes import SceneArrays


def scene_zones(scene: SceneArrays) -> dict:
    """The context zones of a cached scene as the pipeline hands them to a detector."""
    return {z: scene.zones[j].astype(bool) for j, z in enumerate(CONTEXT_ZONES)}


def scene_probabilities(detector, scene: SceneArrays) -> np.ndarray:
    """Whole-scene probabilities, tiled as in a pipeline run."""
    probs, _ = predict_arrays(scene.before, scene.after, scene.valid, scene_zones(scene), detector)
    return probs


def calibrate(detector, scenes: list[SceneArrays], progress: bool = True
              ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per-category thresholds that maximise pixel F1 on validation scenes, and the F1/IoU they give."""
    from tqdm import tqdm

    grid = np.round(np.arange(0.2, 0.91, 0.05), 2)
    counts = np.zeros((len(CLASSIFIED_IDS), len(grid), 3))  # tp, fp, fn
    for scene in tqdm(scenes, desc="calibrating thresholds", disable=not progress):
        probs = scene_probabilities(detector, scene)
        best = probs.argmax(axis=0)
        top = probs.max(axis=0)
        for i in range(len(CLASSIFIED_IDS)):
            truth = scene.labels == i + 1
            mine = best == i
            for j, t in enumerate(grid):
                pred = mine & (top >= t)
                counts[i, j] += (np.sum(pred & truth), np.sum(pred & ~truth), np.sum(~pred & truth))
    thresholds, metrics = {}, {}
    for i, cat in enumerate(CLASSIFIED_IDS):
        tp, fp, fn = counts[i].T
        f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        j = int(np.argmax(f1))
        thresholds[cat] = float(grid[j])
        metrics[cat] = {"f1": round(float(f1[j]), 3), "iou": round(float(tp[j] / max(tp[j] + fp[j] + fn[j], 1)), 3)}
    return thresholds, metrics
