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


def touches_border(lab: np.ndarray, n: int, open_edge: np.ndarray | None = None) -> np.ndarray:
    """Which of the `n` labels of `lab` reach the raster's border or a pixel of `open_edge` (beyond
    which the change may go on: the neighbouring zone's side of a UTM boundary)."""
    border = [lab[0], lab[-1], lab[:, 0], lab[:, -1]]
    if open_edge is not None:
        border.append(lab[open_edge])
    hit = np.zeros(n + 1, dtype=bool)
    hit[np.unique(np.concatenate(border))] = True
    hit[0] = False
    return hit


def open_edge_of(outside: np.ndarray | None) -> np.ndarray | None:
    """The pixels next to `outside` (outside the cell's part of the AOI), where a change may go on."""
    return None if outside is None else ndimage.binary_dilation(outside, structure=_EIGHT) & ~outside


def border_changes(labels: np.ndarray, outside: np.ndarray | None = None) -> np.ndarray:
    """The changed pixels of `labels` whose change reaches the raster's border or the AOI's cut: a
    part of a change that may go on beyond them."""
    comp, n = ndimage.label(labels > 0, structure=_EIGHT)
    return touches_border(comp, n, open_edge_of(outside))[comp]


def name_changes(votes: np.ndarray, categories: tuple[str, ...], pixel_m: float) -> np.ndarray:
    """The category index + 1 each change takes from its `votes` (changes × labels: its pixels of
    each label, no change first), or -1 where it keeps its pixels' own labels.

    One rule for a change seen whole in a raster and for one joined across cells by
    `pipeline.detection.vectorize.merge_across_cells`: see `one_category_per_change`.
    """
    n = len(votes)
    other = categories.index(OTHER_ID) + 1 if OTHER_ID in categories else None
    classified = votes.copy()
    classified[:, 0] = 0
    if other is not None:
        classified[:, other] = 0
    winner = classified.argmax(axis=1)
    won = classified[np.arange(n), winner]
    unit = np.array([0, *(get_category(c).unit_px(pixel_m) for c in categories)])
    named = (won > 0) & (won >= unit[winner]) & (won >= CLASSIFIED_SHARE * votes[:, 1:].sum(axis=1))
    new = np.where(named, winner, -1)
    if other is not None:
        new = np.where(~named & (votes[:, other] > 0), other, new)
    return new


def one_category_per_change(labels: np.ndarray, categories: tuple[str, ...], pixel_m: float,
                            keep_border_labels: bool = False, outside: np.ndarray | None = None) -> np.ndarray:
    """`labels` with each 8-connected change given one category: its classified majority where
    that holds its own mapping unit and CLASSIFIED_SHARE of the change, else `other`.

    A change with no `other` pixel and no majority that qualifies keeps its pixels' own labels:
    where `other` is not reported (switched off, so none of its pixels appear) it is not made up
    here, and each piece is held to its own unit as before.

    With `keep_border_labels`, a change that reaches the raster's border or the AOI's cut
    (`outside`) keeps its pixels' own labels too: it is only a part of a change, which is named
    once it has been joined with its other parts (`merge_across_cells`), by its votes as a whole.
    """
    changed = labels > 0
    comp, n = ndimage.label(changed, structure=_EIGHT)
    if not n:
        return labels
    part, value = comp[changed], labels[changed]  # the changed pixels alone: a few per cent of a band
    k = len(categories) + 1
    votes = np.bincount(part.astype(np.int64) * k + value, minlength=(n + 1) * k).reshape(n + 1, k)
    new = name_changes(votes, categories, pixel_m)  # -1: the change keeps its pixels' own labels
    if keep_border_labels:
        new[touches_border(comp, n, open_edge_of(outside))] = -1
    grouped = new[part]
    out = labels.copy()
    out[changed] = np.where(grouped >= 0, grouped, value)
    return out


def decide(probs: np.ndarray, categories: tuple[str, ...], thresholds: dict[str, float],
           seen: np.ndarray | None = None, pixel_m: float = 10.0, *, keep_border_labels: bool = False,
           outside: np.ndarray | None = None) -> np.ndarray:
    """Category index + 1 of each pixel of `probs` (categories, rows, cols); 0 = no change.

    Pixels outside `seen` (nodata, outside the AOI) are no change and cast no vote; `pixel_m` is
    the pixel size in metres, for the mapping units. A raster that is one part of a larger area
    (a cell, a band of rows) passes `keep_border_labels` (and `outside`, the AOI's cut): the
    changes cut by its edges are named once joined (see `one_category_per_change`).
    """
    labels = pixel_labels(probs, categories, thresholds)
    if seen is not None:
        labels[~seen] = 0
    return one_category_per_change(labels, categories, pixel_m, keep_border_labels, outside)
