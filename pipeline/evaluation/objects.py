"""Pixel and object counts of a change mask against a truth mask, the currency of every score here.

Objects are 8-connected patches of at least `min_px` pixels (the mapping unit). A true object is
found when flagged pixels cover at least `cover` of it (any overlap when `cover` is 0); a flagged
object is true when it touches a true pixel. Counts are summed over scenes before ratios are
taken, so big scenes weigh more, as they do in a user's region.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class Counts:
    """Summed pixel and object counts, and the ratios they give."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    objects: int = 0  # true objects at or above the mapping unit
    found: int = 0
    flagged: int = 0  # flagged objects at or above the mapping unit
    flagged_true: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def pixel_f1(self) -> float:
        return 2 * self.tp / max(2 * self.tp + self.fp + self.fn, 1)

    @property
    def pixel_precision(self) -> float:
        return self.tp / max(self.tp + self.fp, 1)

    @property
    def pixel_recall(self) -> float:
        return self.tp / max(self.tp + self.fn, 1)

    @property
    def object_recall(self) -> float:
        return self.found / max(self.objects, 1)

    @property
    def object_precision(self) -> float:
        return self.flagged_true / max(self.flagged, 1)

    @property
    def object_f1(self) -> float:
        p, r = self.object_precision, self.object_recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    @property
    def field_f1(self) -> float:
        """Harmonic mean of object recall (changes found at the mapping unit) and pixel precision
        (the share of flagged ground that changed): what a field team gains and walks for nothing.
        Unlike object F1 it cannot be won by flagging everything as one object."""
        p, r = self.pixel_precision, self.object_recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    def summary(self) -> dict[str, float | int]:
        """The ratios, rounded, with the object counts behind them."""
        return {"pixel_precision": round(self.pixel_precision, 3), "pixel_recall": round(self.pixel_recall, 3),
                "pixel_f1": round(self.pixel_f1, 3), "object_recall": round(self.object_recall, 3),
                "object_precision": round(self.object_precision, 3), "object_f1": round(self.object_f1, 3),
                "field_f1": round(self.field_f1, 3),
                "objects": self.objects, "found": self.found, "flagged": self.flagged}


def _objects(mask: np.ndarray, min_px: int) -> tuple[np.ndarray, np.ndarray]:
    comp, n = ndimage.label(mask, structure=_EIGHT)
    ids = np.flatnonzero(np.bincount(comp.ravel(), minlength=n + 1) >= min_px)
    return comp, ids[ids > 0]


def count(flagged: np.ndarray, truth: np.ndarray, min_px: int, cover: float = 0.0,
          valid: np.ndarray | None = None) -> Counts:
    """Counts of one boolean mask against one truth mask (only `valid` pixels, if given)."""
    if valid is not None:
        flagged, truth = flagged & valid, truth & valid
    out = Counts(tp=int((flagged & truth).sum()), fp=int((flagged & ~truth).sum()), fn=int((~flagged & truth).sum()))
    comp, ids = _objects(truth, min_px)
    if ids.size:
        share = np.asarray(ndimage.mean(flagged.astype(np.float32), comp, ids))
        out.objects, out.found = int(ids.size), int(np.sum(share >= cover if cover > 0 else share > 0))
    comp, ids = _objects(flagged, min_px)
    if ids.size:
        touches = np.asarray(ndimage.maximum(truth.astype(np.uint8), comp, ids))
        out.flagged, out.flagged_true = int(ids.size), int(np.sum(touches > 0))
    return out
