"""What every detector offers the pipeline: per-category probabilities for a batch of tiles."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from detectors.categories import Zone


class Detector(Protocol):
    """A change detector.

    `predict` takes before and after reflectance batches shaped (N, bands, H, W) in the order of
    `bands`, a valid-data mask (N, H, W) and context-zone masks (N, H, W) by zone, and returns
    probabilities (N, categories, H, W) in the order of `categories`, restricted to each
    category's zone; how overlapping categories share a pixel is the detector's own business.
    A detector is built for the categories a run looks for: the others score 0 and take no part
    in that sharing. A pixel is assigned to the most probable category whose probability reaches
    that category's threshold.
    """

    name: str
    bands: tuple[str, ...]
    categories: tuple[str, ...]
    thresholds: dict[str, float]

    def predict(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                zones: dict[Zone, np.ndarray]) -> np.ndarray: ...
