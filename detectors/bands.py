"""Sentinel-2 band names, L2A radiometry and the spectral indices the detectors read."""

from __future__ import annotations

import numpy as np

#: Reflectance bands every detector in this package reads, in stack order.
REFLECTANCE_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11", "B12")
#: Scene classification band of L2A products.
SCL_BAND = "SCL"

#: L2A digital numbers: reflectance = (DN + BOA_ADD_OFFSET) / QUANTIFICATION_VALUE.
L2A_QUANTIFICATION = 10000.0
L2A_OFFSET = -1000.0

#: SCL classes that hide the ground: no data, saturated, cloud shadow, cloud medium/high,
#: thin cirrus, snow.
SCL_INVALID: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)


def band_index(name: str) -> int:
    """Position of a reflectance band in the stack."""
    return REFLECTANCE_BANDS.index(name)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    den = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(np.abs(den) > 1e-6, (a - b) / den, 0.0)
    return out.astype(np.float32)


def indices(stack: np.ndarray) -> dict[str, np.ndarray]:
    """Spectral indices of a reflectance stack shaped (bands, ...) in REFLECTANCE_BANDS order.

    Formulas as in docs/categories.md: NDVI, NDWI, MNDWI, NBR, NBR2, BSI, plus the mean
    reflectance of all six bands ("brightness"), which separates coal and char from soil.
    """
    b02, b03, b04, b08, b11, b12 = (stack[i] for i in range(len(REFLECTANCE_BANDS)))
    return {
        "ndvi": _ratio(b08, b04),
        "ndwi": _ratio(b03, b08),
        "mndwi": _ratio(b03, b11),
        "nbr": _ratio(b08, b12),
        "nbr2": _ratio(b11, b12),
        "bsi": _ratio(b11 + b04, b08 + b02),
        "brightness": stack.mean(axis=0).astype(np.float32),
    }
