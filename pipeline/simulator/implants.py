"""Changes implanted into real Sentinel-2 pairs, so a model sees real texture and real
date-to-date differences that are not changes.

Each implant starts where its category can start (forest where the earlier image shows
forest, ploughing where it shows vegetation, sand bars at water), takes a measured spectrum
of one of the category's after-surfaces, carries the real image's own texture, and blends in
at its edges as mixed pixels. Real pairs are Level-1C, so the surface spectrum is lifted to
the top of the atmosphere first. Zoned categories get their zone as a context channel around
the implant; elsewhere zones are unknown, as for a user without zone layers.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from scipy import ndimage

from detectors.bands import indices
from detectors.categories import CLASSIFIED_IDS, get_category
from detectors.features import CONTEXT_ZONES, UNKNOWN_ZONE
from pipeline.simulator.fields import SHAPES
from pipeline.simulator.landscape import SimulationGrid
from pipeline.simulator.render import coverage, surface_spectrum, toa_reflectance
from pipeline.simulator.settings import SHAPE_CHOICES, SURFACE_CHOICES

_RES = 10.0
#: Categories whose zone is only known from a map: an implant of them comes with its zone.
_ZONE_ALWAYS = {"black_soil", "river", "grassland", "lake"}


def _start_masks(before: np.ndarray) -> dict[str, np.ndarray]:
    """Where a change of each category can begin, judged on the earlier image."""
    ix = indices(np.nan_to_num(before))
    ndvi, mndwi = ix["ndvi"], ix["mndwi"]
    water = mndwi > 0.1
    near_water = ndimage.binary_dilation(water, iterations=3) & ~ndimage.binary_erosion(water, iterations=2)
    return {
        "temporary_land": ndvi > 0.3,
        "forest": ndvi > 0.65,
        "black_soil": ndvi > 0.3,
        "river": near_water,
        "grassland": (ndvi > 0.25) & (ndvi < 0.75),
        "lake": near_water,
        "wetland": (mndwi > -0.35) & (ndvi > 0.2),
        "mine": (ndvi > 0.1) & ~water,
    }


def implant(before: np.ndarray, after: np.ndarray, rng: np.random.Generator, count: int,
            categories: tuple[str, ...] = CLASSIFIED_IDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to `count` changes of `categories` implanted into the after chip (bands, H, W).

    Returns the new after chip, labels (H, W; 0 background, 1 + category index) and zone
    channels (len(CONTEXT_ZONES), H, W) with UNKNOWN_ZONE wherever no zone was given.
    """
    _, h, w = after.shape
    grid = SimulationGrid(crs="", transform=Affine(_RES, 0, 0, 0, -_RES, 0), height=h, width=w)
    starts = {c: m for c, m in _start_masks(before).items() if m.sum() > 30 and c in categories}
    out = after.copy()
    labels = np.zeros((h, w), dtype=np.uint8)
    zones = np.full((len(CONTEXT_ZONES), h, w), UNKNOWN_ZONE, dtype=np.float32)
    brightness = np.nan_to_num(after).mean(axis=0)
    texture = np.clip(brightness / (ndimage.gaussian_filter(brightness, 4) + 1e-3), 0.85, 1.15)
    turbidity = rng.uniform(0.6, 1.5)
    for _ in range(count):
        if not starts:
            break
        cat = str(rng.choice(sorted(starts)))
        rows, cols = np.nonzero(starts[cat] & (labels == 0))
        if rows.size == 0:
            continue
        i = rng.integers(rows.size)
        area = float(rng.uniform(0.3, 3.0) * max(get_category(cat).min_area_m2, 5000))
        shape = SHAPES[str(rng.choice(SHAPE_CHOICES[cat]))]
        geom = shape(grid.xy(rows[i], cols[i]), area, rng)
        frac = coverage(grid, geom)
        surface = str(rng.choice(SURFACE_CHOICES[cat]))
        spectrum = toa_reflectance(surface_spectrum(surface, rng), turbidity)[:, None, None]
        out = (1 - frac) * out + frac * spectrum * texture
        labels[frac >= 0.5] = CLASSIFIED_IDS.index(cat) + 1
        zone = get_category(cat).zone
        if zone in CONTEXT_ZONES and (cat in _ZONE_ALWAYS or rng.random() < 0.5):
            region = ndimage.binary_dilation(frac > 0, iterations=int(rng.integers(5, 40)))
            j = CONTEXT_ZONES.index(zone)
            zones[j] = np.where(zones[j] == UNKNOWN_ZONE, 0.0, zones[j])
            zones[j][region] = 1.0
    out = out + rng.normal(0, 0.003, size=out.shape).astype(np.float32) * (labels > 0)
    return out.astype(np.float32), labels, zones
