"""Restrict category probabilities to the zones where each category applies."""

from __future__ import annotations

import numpy as np

from detectors.categories import Zone, get_category


def restrict_to_zones(probs: np.ndarray, categories: tuple[str, ...], zones: dict[Zone, np.ndarray]) -> np.ndarray:
    """Zero each category (axis 0) outside its zone; a zone that was not supplied does not restrict."""
    out = probs.copy()
    for i, cat in enumerate(categories):
        zone = get_category(cat).zone
        if zone is not Zone.EVERYWHERE and zone in zones:
            out[i] *= zones[zone]
    return out
