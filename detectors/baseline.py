"""The transparent spectral-index baseline: one documented rule per category.

Each rule is a fuzzy AND (the minimum) of soft conditions on indices of the before and after
composites (`above(x, t, s)` is a logistic step at threshold t with softness s), so its output
reads as a probability and a pixel's score is explained by its least satisfied condition. Rules and thresholds
are listed in docs/categories.md; it is the reference every learned model must beat.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import expit

from detectors.bands import REFLECTANCE_BANDS, indices
from detectors.categories import CATEGORY_IDS, CLASSIFIED_IDS, OTHER_ID, Zone
from detectors.zones import restrict_to_zones

#: Where rules overlap, the earlier category wins: a zone's own category is the most specific
#: reading of a change there; the extreme surfaces of mines outrank the moderate soils of
#: ploughed steppe and temporary land, which applies everywhere.
PRECEDENCE: tuple[str, ...] = ("lake", "river", "wetland", "black_soil", "forest", "mine",
                               "grassland", "temporary_land")


def above(x: np.ndarray, t: float, s: float) -> np.ndarray:
    """Soft x > t (the logistic function, without overflow far from t)."""
    return expit((x - t) / s)


def below(x: np.ndarray, t: float, s: float) -> np.ndarray:
    """Soft x < t."""
    return expit((t - x) / s)


def all_of(*conditions: np.ndarray | float) -> np.ndarray:
    """Fuzzy AND: a rule is as sure as its least satisfied condition."""
    return np.minimum.reduce(np.broadcast_arrays(*conditions))


def category_scores(before: np.ndarray, after: np.ndarray, mining_district: np.ndarray) -> dict[str, np.ndarray]:
    """Raw rule scores of one tile, before zones and precedence."""
    b, a = indices(before), indices(after)
    d_ndvi = a["ndvi"] - b["ndvi"]
    d_bright = a["brightness"] - b["brightness"]
    bare_after = below(a["ndvi"], 0.2, 0.03)
    brighter = above(d_bright, 0.06, 0.02)
    not_water = below(a["ndwi"], 0.1, 0.05)
    not_char = above(a["nbr2"], -0.03, 0.02)  # burnt ground reflects more in SWIR2 than SWIR1
    rock = all_of(above(a["brightness"], 0.35, 0.02), below(a["ndvi"], 0.15, 0.03), above(d_bright, 0.1, 0.02))
    coal = all_of(below(a["brightness"], 0.075, 0.008), below(a["ndvi"], 0.2, 0.04), not_water,
                  below(d_bright, -0.04, 0.015), mining_district)
    subsoil = all_of(above(a["brightness"], 0.24, 0.02), bare_after, brighter)
    new_pit = all_of(above(a["ndwi"], 0.05, 0.04), below(b["ndwi"], -0.2, 0.05))
    return {
        "temporary_land": all_of(above(b["ndvi"], 0.2, 0.04), below(a["ndvi"], 0.2, 0.03),
                                 above(a["brightness"], 0.17, 0.01), below(a["brightness"], 0.33, 0.02),
                                 above(a["bsi"], 0.0, 0.03), below(d_ndvi, -0.18, 0.03), not_char),
        "forest": all_of(above(b["ndvi"], 0.7, 0.04), below(a["ndvi"], 0.5, 0.05),
                         below(a["nbr"] - b["nbr"], -0.3, 0.05), above(a["brightness"], 0.1, 0.01)),
        "black_soil": np.maximum(subsoil, new_pit),
        "river": all_of(above(a["brightness"], 0.2, 0.02), bare_after, not_water, brighter),
        "grassland": all_of(above(b["ndvi"], 0.2, 0.04), below(a["ndvi"], 0.22, 0.03), above(a["bsi"], -0.05, 0.03),
                            above(a["brightness"], 0.075, 0.008), below(a["brightness"], 0.16, 0.01),
                            below(d_ndvi, -0.18, 0.03), not_char),
        "lake": all_of(above(a["brightness"], 0.22, 0.02), bare_after, not_water, brighter),
        "wetland": all_of(above(b["mndwi"], -0.3, 0.05), above(b["ndvi"], 0.2, 0.05),
                          below(a["ndvi"], 0.25, 0.04), below(d_ndvi, -0.25, 0.04), not_water),
        "mine": np.maximum(rock, coal),
    }


class SpectralBaseline:
    """Rule-based detector over the six Sentinel-2 bands; no training, no GPU."""

    name = "baseline"
    bands = REFLECTANCE_BANDS
    categories = CATEGORY_IDS
    thresholds: ClassVar[dict[str, float]] = dict.fromkeys(CATEGORY_IDS, 0.5)

    def __init__(self, active: list[str] | None = None) -> None:
        chosen = CATEGORY_IDS if active is None else active
        self.active = np.array([c in chosen for c in CLASSIFIED_IDS])
        self.report_other = OTHER_ID in chosen

    def predict(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                zones: dict[Zone, np.ndarray]) -> np.ndarray:
        """Rule scores per category, tile by tile, restricted to each category's zone; `other` is the
        strongest rule that a supplied zone layer does not rule out, whether or not its category runs."""
        out = np.zeros((before.shape[0], len(self.categories), *before.shape[2:]), dtype=np.float32)
        for n in range(before.shape[0]):
            tile_zones = {z: m[n] for z, m in zones.items()}
            district = tile_zones.get(Zone.MINING_DISTRICT, np.ones(before.shape[2:], dtype=bool))
            scores = category_scores(np.nan_to_num(before[n]), np.nan_to_num(after[n]), district)
            stack = restrict_to_zones(np.stack([scores[c] for c in CLASSIFIED_IDS]).astype(np.float32),
                                      CLASSIFIED_IDS, tile_zones)
            if self.report_other:
                out[n, -1] = stack.max(axis=0) * valid[n]
            stack[~self.active] = 0.0  # a category the run leaves out must not damp the others
            out[n, :-1] = apply_precedence(stack, CLASSIFIED_IDS) * valid[n]
        return out


def apply_precedence(stack: np.ndarray, categories: tuple[str, ...]) -> np.ndarray:
    """Damp each category by the scores of the categories that outrank it (see PRECEDENCE)."""
    out = stack.copy()
    keep = np.ones(stack.shape[1:], dtype=np.float32)
    for cat in PRECEDENCE:
        i = categories.index(cat)
        out[i] = stack[i] * keep
        keep = keep * (1 - stack[i])
    return out
