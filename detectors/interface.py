"""What every detector offers the pipeline: per-category probabilities for a batch of tiles."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from detectors.categories import Zone


class Detector(Protocol):
    """A change detector.

    `predict` takes before and after reflectance batches shaped (N, bands, H, W) in the order of
    `bands`, a valid-data mask (N, H, W) and context-zone masks (N, H, W) by zone, and returns
    probabilities (N, categories, H, W) in the order of `categories`, already restricted to
    each category's zone. A pixel goes to the first category of `precedence` whose probability
    reaches its threshold, or, with no precedence, to the most probable such category. The
    decision is the pipeline's, so categories a run leaves out never overrule the others.
    """

    name: str
    bands: tuple[str, ...]
    categories: tuple[str, ...]
    thresholds: dict[str, float]
    precedence: tuple[str, ...] | None

    def predict(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                zones: dict[Zone, np.ndarray]) -> np.ndarray: ...
