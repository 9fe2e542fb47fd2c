"""What every detector offers the pipeline: per-category probabilities for a batch of tiles."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from detectors.categories import Zone


class Detector(Protocol):
    """A change detector.

    `predict` takes before and after reflectance batches shaped (N, bands, H, W) in the order of
    `bands`, a valid-data mask (N, H, W) and context-zone masks (N, H, W) by zone, and returns
    probabilities (N, categories, H, W) in the order of `categories` (the registry's
    CATEGORY_IDS), restricted to each category's zone; how overlapping categories share a pixel
    is the detector's own business. The last band, `other`, is the probability that the pixel
    changed at all, whatever its category and zone.
    A detector is built for the categories a run looks for: the others score 0 and take no part
    in that sharing (but still count as change in `other`). The decision rule is
    `pipeline.detection.decision.decide`.
    """

    name: str
    bands: tuple[str, ...]
    categories: tuple[str, ...]
    thresholds: dict[str, float]

    def predict(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                zones: dict[Zone, np.ndarray]) -> np.ndarray: ...
