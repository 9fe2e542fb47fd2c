"""The one decision rule from probabilities to a category per pixel, used by runs, `detect` and the
calibration of thresholds, so thresholds are chosen under the rule they are applied with.

A pixel takes the most probable classified category whose probability reaches that category's
threshold. Where none does, and the run reports `other`, the pixel is `other` when its
any-change probability (the `other` band) reaches the `other` threshold: a real change is never
dropped for want of a category or a zone.
"""

from __future__ import annotations

import numpy as np

from detectors.categories import OTHER_ID


def decide(probs: np.ndarray, categories: tuple[str, ...], thresholds: dict[str, float]) -> np.ndarray:
    """Category index + 1 of each pixel of `probs` (categories, rows, cols); 0 = no change."""
    thr = np.array([thresholds[c] for c in categories], dtype=np.float32)[:, None, None]
    above = probs >= thr
    other = categories.index(OTHER_ID) if OTHER_ID in categories else None
    if other is not None:
        above[other] = False
    hit = above.any(axis=0)
    labels = np.zeros(hit.shape, dtype=np.uint8)
    if hit.any():  # the most probable of those above their threshold, at the few pixels that have one
        labels[hit] = np.where(above[:, hit], probs[:, hit], -1.0).argmax(axis=0).astype(np.uint8) + 1
    if other is not None:
        labels[~hit & (probs[other] >= thr[other])] = other + 1
    return labels
