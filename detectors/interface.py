"""What every detector offers the pipeline: per-category probabilities for a batch of tiles."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from detectors.categories import Zone


class Detector(Protocol):
    """A change detector.

    `predict` takes before and after reflectance batches shaped (N, bands, H, W) in the order of
    `bands`, a valid-data mask (N, H, W) and context-zone masks (N, H, W) by zone, and returns
    probabilities (N, categories, H, W) in the order of `categories`. A pixel is assigned to
    the most probable category whose probability reaches that category's threshold.
    """

    name: str
    bands: tuple[str, ...]
    categories: tuple[str, ...]
    thresholds: dict[str, float]

    def predict(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                zones: dict[Zone, np.ndarray]) -> np.ndarray: ...
