"""Two dates of ground that did not change, made from one real image: the negatives no real pair
can guarantee, since every real pair may hold unlabelled real change."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from detectors.bands import indices


def perturb_no_change(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """The same ground seen again: per-band gain/offset, haze (mostly blue), a seasonal NDVI shift
    of vegetated pixels, sub-pixel misregistration and sensor noise. Nothing here is a change."""
    out = img.astype(np.float32).copy()
    ndvi = indices(out)["ndvi"]
    veg = np.clip((ndvi - 0.2) / 0.4, 0, 1)
    f = rng.uniform(-0.15, 0.15) * strength
    out[3] *= 1 + f * veg
    out[2] *= 1 - 0.6 * f * veg
    out[4] *= 1 - 0.2 * f * veg
    gain = rng.normal(1.0, 0.04 * strength) + rng.normal(0, 0.03 * strength, size=6)
    offset = rng.normal(0, 0.004 * strength, size=6)
    out = out * gain[:, None, None].astype(np.float32) + offset[:, None, None].astype(np.float32)
    haze = rng.uniform(-0.01, 0.035) * strength
    shape = np.array([1.0, 0.75, 0.55, 0.3, 0.1, 0.05], np.float32)[:, None, None]
    field_ = 1 + 0.5 * ndimage.gaussian_filter(rng.normal(size=out.shape[1:]), 12) * 12
    out = out + haze * shape * field_[None].astype(np.float32)
    d = rng.uniform(-0.5, 0.5, size=2) * strength
    out = ndimage.shift(out, (0, d[0], d[1]), order=1, mode="nearest")
    out = out + rng.normal(0, 0.003, size=out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def same_image_pair(before: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two dates of unchanged ground from one real image; both are resampled so neither is sharper."""
    a = perturb_no_change(before, rng)
    b = ndimage.shift(before, (0, *rng.uniform(-0.3, 0.3, size=2)), order=1, mode="nearest").astype(np.float32)
    return (b, a) if rng.random() < 0.5 else (a, b)
