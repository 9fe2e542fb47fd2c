"""Real image pairs with a change label (`<name>/before.tif`, `after.tif`, `change.tif`), read in
place, to measure detectors on real change and to train on with whole cities held out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from pipeline.errors import InputError
from pipeline.sources.pair import read_pair


@dataclass
class LabelledPair:
    """One labelled pair as reflectance (bands, H, W), the seen-on-both-dates mask and the change truth."""

    name: str
    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    change: np.ndarray  # (H, W) bool


def load_labelled(folder: Path, name: str, radiometry: str = "auto") -> LabelledPair:
    """A labelled pair, the after image and the label on the before image's grid."""
    d = Path(folder) / name
    for f in ("before.tif", "after.tif", "change.tif"):
        if not (d / f).exists():
            raise InputError(d / f, None, "missing from a labelled pair",
                             "a labelled pair folder holds before.tif, after.tif and change.tif")
    pair = read_pair(d / "before.tif", d / "after.tif", radiometry)
    with rasterio.open(d / "change.tif") as src:
        change = src.read(1) > 0
    if change.shape != pair.valid.shape:
        raise InputError(d / "change.tif", "shape", f"{change.shape} differs from the pair's {pair.valid.shape}",
                         "give a change label on the before image's grid")
    return LabelledPair(name, np.nan_to_num(pair.before), np.nan_to_num(pair.after), pair.valid, change)


def load_labelled_pairs(folder: Path, names: Iterable[str], radiometry: str = "auto") -> dict[str, LabelledPair]:
    """Several labelled pairs by name."""
    return {n: load_labelled(folder, n, radiometry) for n in names}
