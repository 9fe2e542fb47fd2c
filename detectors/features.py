"""The input stack a learned detector sees: both composites, their ratios and indices, and context.

Log-ratios of each band make a dark-on-dark change (coal on dark soil, a dark roof on ploughed
land) as visible as a bright one; indices of both dates spare a small model from learning them.
Context zones are channels valued 1 inside, 0 outside and 0.5 where no layer was supplied, so
one model serves users with and without zone layers.
"""

from __future__ import annotations

import numpy as np

from detectors.bands import REFLECTANCE_BANDS, indices
from detectors.categories import Zone

INDEX_NAMES: tuple[str, ...] = ("ndvi", "ndwi", "mndwi", "nbr", "bsi", "brightness")
#: Zones a model reads as context, in channel order.
CONTEXT_ZONES: tuple[Zone, ...] = (Zone.FOREST, Zone.GRASSLAND, Zone.BLACK_SOIL, Zone.RIVER, Zone.LAKE,
                                   Zone.WETLAND, Zone.MINING_DISTRICT)
UNKNOWN_ZONE = 0.5
_DARK = 0.01  # reflectance added before a log-ratio, so noise on black pixels stays noise

FEATURE_NAMES: tuple[str, ...] = (
    *(f"before_{b}" for b in REFLECTANCE_BANDS), *(f"after_{b}" for b in REFLECTANCE_BANDS),
    *(f"logratio_{b}" for b in REFLECTANCE_BANDS), *(f"before_{i}" for i in INDEX_NAMES),
    *(f"after_{i}" for i in INDEX_NAMES), "valid", *(f"zone_{z.value}" for z in CONTEXT_ZONES),
)
#: Channels that are standardised with the model card's statistics; the rest are already 0..1.
SPECTRAL_CHANNELS = FEATURE_NAMES.index("valid")


def feature_stack(before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                  zones: dict[Zone, np.ndarray]) -> np.ndarray:
    """(N, features, H, W) float32 from (N, bands, H, W) reflectance, (N, H, W) masks and zones."""
    before = np.nan_to_num(before.astype(np.float32, copy=False))
    after = np.nan_to_num(after.astype(np.float32, copy=False))
    n, _, h, w = before.shape
    out = np.empty((n, len(FEATURE_NAMES), h, w), dtype=np.float32)
    nb = len(REFLECTANCE_BANDS)
    out[:, :nb] = before
    out[:, nb:2 * nb] = after
    out[:, 2 * nb:3 * nb] = np.log((np.clip(after, 0, None) + _DARK) / (np.clip(before, 0, None) + _DARK))
    ib, ia = indices(np.moveaxis(before, 1, 0)), indices(np.moveaxis(after, 1, 0))
    k = 3 * nb
    for name in INDEX_NAMES:
        out[:, k] = ib[name]
        out[:, k + len(INDEX_NAMES)] = ia[name]
        k += 1
    k += len(INDEX_NAMES)
    out[:, k] = valid
    for j, zone in enumerate(CONTEXT_ZONES, start=k + 1):
        out[:, j] = zones[zone] if zone in zones else UNKNOWN_ZONE
    out[:, :k] *= valid[:, None]  # what was not seen carries no signal
    return out


def standardise(stack: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Scale the spectral channels by the model's statistics, in place."""
    stack[:, :SPECTRAL_CHANNELS] -= mean[None, :, None, None]
    stack[:, :SPECTRAL_CHANNELS] /= std[None, :, None, None]
    return stack
