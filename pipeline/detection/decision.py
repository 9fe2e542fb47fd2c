"""The one decision rule from probabilities to a category per pixel, used by runs, `detect` and the
calibration of thresholds, so thresholds are chosen under the rule they are applied with.

First each pixel: the most probable classified category whose probability reaches that
category's threshold; where none does, `other` when its any-change probability (the `other`
band) reaches the `other` threshold, so a real change is never dropped for want of a category
or a zone.

Then each change: touching changed pixels are one change with one category. A real change is
often read as a core of one category and a rim of another or of `other`; pixel by pixel each
piece falls below its own mapping unit and the change vanishes. The change takes its classified
majority where that category's own pixels cover its mapping unit and at least CLASSIFIED_SHARE
of the change, and is `other` otherwise. A category is never made up to its unit by pixels it
did not win (a lake fringe of 15 px does not become a lake lead because an `other` rim touches it).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from detectors.categories import OTHER_ID, get_category

#: The least share of a change its classified majority must hold to name it.
CLASSIFIED_SHARE = 0.25
_EIGHT = np.ones((3, 3), dtype=bool)


def pixel_labels(probs: np.ndarray, categories: tuple[str, ...], thresholds: dict[str, float]) -> np.ndarray:
    """Category index + 1 of each pixel of `probs` (categories, rows, cols) on its own; 0 = no change."""
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


def one_category_per_change(labels: np.ndarray, categories: tuple[str, ...], pixel_m: float) -> np.ndarray:
    """`labels` with each 8-connected change given one category: its classified majority where
    that holds its own mapping unit and CLASSIFIED_SHARE of the change, else `other`.

    A change with no `other` pixel and no majority that qualifies keeps its pixels' own labels:
    where `other` is not reported (switched off, so none of its pixels appear) it is not made up
    here, and each piece is held to its own unit as before.
    """
    changed = labels > 0
    comp, n = ndimage.label(changed, structure=_EIGHT)
    if not n:
        return labels
    part, value = comp[changed], labels[changed]  # the changed pixels alone: a few per cent of a band
    k = len(categories) + 1
    votes = np.bincount(part.astype(np.int64) * k + value, minlength=(n + 1) * k).reshape(n + 1, k)
    other = categories.index(OTHER_ID) + 1 if OTHER_ID in categories else None
    classified = votes.copy()
    classified[:, 0] = 0
    if other is not None:
        classified[:, other] = 0
    winner = classified.argmax(axis=1)
    won = classified[np.arange(n + 1), winner]
    unit = np.array([0, *(get_category(c).unit_px(pixel_m) for c in categories)])
    named = (won > 0) & (won >= unit[winner]) & (won >= CLASSIFIED_SHARE * votes[:, 1:].sum(axis=1))
    new = np.where(named, winner, -1)  # -1: the change keeps its pixels' own labels
    if other is not None:
        new = np.where(~named & (votes[:, other] > 0), other, new)
    grouped = new[part]
    out = labels.copy()
    out[changed] = np.where(grouped >= 0, grouped, value)
    return out

def decide(probs: np.ndarray, categories: tuple[str, ...], thresholds: dict[str, float],
           seen: np.ndarray | None = None, pixel_m: float = 10.0) -> np.ndarray:
    """Category index + 1 of each pixel of `probs` (categories, rows, cols); 0 = no change.

    Pixels outside `seen` (nodata, outside the AOI) are no change and cast no vote; `pixel_m` is
    the pixel size in metres, for the mapping units.
    """
    labels = pixel_labels(probs, categories, thresholds)
    if seen is not None:
        labels[~seen] = 0
    return one_category_per_change(labels, categories, pixel_m)
