"""The input stack a learned detector sees: both composites, their ratios and indices, and context.

Log-ratios of each band make a dark-on-dark change (coal on dark soil, a dark roof on ploughed
land) as visible as a bright one; indices of both dates spare a small model from learning them.
Context zones are channels valued 1 inside, 0 outside and 0.5 where no layer was supplied, so
one model serves users with and without zone layers.

The stack is built with torch (`feature_tensor`), on whichever device the tiles are: on a GPU
the features and their standardisation cost no host time. `feature_stack` is the same for
numpy arrays (training, tests).
"""

from __future__ import annotations

import numpy as np

from detectors.bands import REFLECTANCE_BANDS, band_index
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


def _ratio(a, b, out=None):  # torch tensors -> torch tensor
    """Normalised difference (a - b) / (a + b), 0 where the sum vanishes (as detectors.bands.indices),
    written into `out` when given (one pass over it, no temporaries of its size but the sum)."""
    import torch

    den = a + b
    out = torch.sub(a, b, out=out) if out is not None else a - b
    return out.div_(den).masked_fill_(den.abs() <= 1e-6, 0.0)


def _index_tensors(stack, out=None) -> list:  # (N, bands, H, W) tensor -> list of (N, H, W), in INDEX_NAMES order
    """The indices of INDEX_NAMES, formulas as in detectors.bands.indices (a test holds them equal),
    written into the channels of `out` (N, len(INDEX_NAMES), H, W) when given."""
    import torch

    b02, b03, b04, b08, b11, b12 = (stack[:, band_index(b)] for b in REFLECTANCE_BANDS)
    into = [None] * len(INDEX_NAMES) if out is None else [out[:, i] for i in range(len(INDEX_NAMES))]
    return [_ratio(b08, b04, into[0]), _ratio(b03, b08, into[1]), _ratio(b03, b11, into[2]),
            _ratio(b08, b12, into[3]), _ratio(b11 + b04, b08 + b02, into[4]),
            torch.mean(stack, dim=1, out=into[5])]


def feature_tensor(before, after, valid, zones: dict):  # torch tensors -> torch tensor
    """(N, features, H, W) float32 from (N, bands, H, W) reflectance, (N, H, W) masks and zones,
    all torch tensors on one device.

    What was not seen carries no signal: both dates are zeroed there first, which makes every
    spectral channel 0 at such pixels (log-ratio of equal values, normalised differences of zero sums)."""
    import torch

    n, nb, h, w = before.shape
    out = torch.empty((n, len(FEATURE_NAMES), h, w), dtype=torch.float32, device=before.device)
    seen = valid[:, None]
    before = torch.nan_to_num(before.float(), nan=0.0, out=out[:, :nb]).mul_(seen)
    after = torch.nan_to_num(after.float(), nan=0.0, out=out[:, nb:2 * nb]).mul_(seen)
    ratio = out[:, 2 * nb:3 * nb]
    torch.div(after.clamp(min=0).add_(_DARK), before.clamp(min=0).add_(_DARK), out=ratio).log_()
    k = 3 * nb
    _index_tensors(before, out[:, k:k + len(INDEX_NAMES)])
    _index_tensors(after, out[:, k + len(INDEX_NAMES):k + 2 * len(INDEX_NAMES)])
    k += 2 * len(INDEX_NAMES)
    out[:, k] = valid
    for j, zone in enumerate(CONTEXT_ZONES, start=k + 1):
        out[:, j] = zones[zone] if zone in zones else UNKNOWN_ZONE
    return out


def feature_stack(before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                  zones: dict[Zone, np.ndarray]) -> np.ndarray:
    """`feature_tensor` of numpy arrays, as a numpy array."""
    import torch

    return feature_tensor(torch.from_numpy(np.ascontiguousarray(before)), torch.from_numpy(np.ascontiguousarray(after)),
                          torch.from_numpy(np.ascontiguousarray(valid)),
                          {z: torch.from_numpy(np.ascontiguousarray(m)) for z, m in zones.items()}).numpy()


def standardise(stack, mean, std):  # numpy arrays or torch tensors alike
    """Scale the spectral channels by the model's statistics, in place (training's batches)."""
    stack[:, :SPECTRAL_CHANNELS] -= mean[None, :, None, None]
    stack[:, :SPECTRAL_CHANNELS] /= std[None, :, None, None]
    return stack


def standardised(stack, mean, std):  # torch tensors -> torch tensor
    """The stack with its spectral channels scaled by the model's statistics (tensors on its device),
    as a new tensor in channels_last, the layout the network runs in: one pass scales and reorders
    (on the CPU about half the time of standardising in place and then reordering)."""
    import torch

    n, c, h, w = stack.shape
    pixels = stack.permute(0, 2, 3, 1)  # a view: the channels of each pixel, as the output lays them out
    out = torch.empty((n, h, w, c), dtype=stack.dtype, device=stack.device)
    k = SPECTRAL_CHANNELS
    torch.addcmul(-mean / std, pixels[..., :k], 1 / std, out=out[..., :k])
    out[..., k:] = pixels[..., k:]
    return out.permute(0, 3, 1, 2)
