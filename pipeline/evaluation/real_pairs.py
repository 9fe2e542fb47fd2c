"""Detectors on real Sentinel-2 pairs: the area they flag, and changes implanted into pairs never
trained on, found or missed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from tqdm import tqdm

from detectors.categories import CLASSIFIED, CLASSIFIED_IDS, get_category


def flagged_on_real_pairs(detectors: list[str], pairs: Path, out: Path, held_out: tuple[str, ...],
                          progress: bool = True) -> pd.DataFrame:
    """Area flagged per 100 km² of seen ground on each real pair, no zones and no permits."""
    from pipeline.detect import detect

    rows = []
    folders = sorted(p for p in Path(pairs).iterdir() if (p / "before.tif").exists())
    for d in tqdm(folders, desc="real pairs", unit="pair", disable=not progress):
        for name in detectors:
            result = detect(d / "before.tif", d / "after.tif", out / d.name / name, name, radiometry="L1C")
            seen_km2 = result.seen_m2 / 1e6
            area = result.polygons.area_m2.sum() / 1e6 if len(result.polygons) else 0.0
            rows.append({"pair": d.name, "detector": name, "held_out": d.name in held_out,
                         "km2": round(seen_km2, 1), "flagged_km2_per_100km2": round(100 * area / seen_km2, 2),
                         **{c: round(100 * result.polygons.area_m2[result.polygons.category == c].sum() / 1e6
                                     / seen_km2, 2) for c in sorted(set(result.polygons.category))}})
    return pd.DataFrame(rows).fillna(0.0)


#: What runs without zone layers, so implants of it can be found in a pair run without zones.
ZONELESS = tuple(c.id for c in CLASSIFIED if not c.needs_zone_layer)


def implanted_recall(detectors: list[str], pairs: Path, out: Path, names: tuple[str, ...], count: int = 16,
                     seed: int = 0) -> pd.DataFrame:
    """Changes implanted into real pairs the model never trained on: of those at least their
    category's mapping unit, how many each detector finds (a change of the implant's category
    overlapping it), and the area flagged outside all implants."""
    from scipy import ndimage

    from pipeline.detect import detect
    from pipeline.simulator.implants import implant
    from pipeline.sources.pair import read_pair

    rows = []
    for name in names:
        folder = Path(pairs) / name
        pair = read_pair(folder / "before.tif", folder / "after.tif")
        rng = np.random.default_rng([seed, len(name)])
        after, labels, _ = implant(pair.before, pair.after, rng, count, ZONELESS)
        labels = labels * pair.valid
        work = out / name
        work.mkdir(parents=True, exist_ok=True)
        with rasterio.open(folder / "after.tif") as src:
            profile = src.profile | {"dtype": "uint16", "nodata": 0}
            tags, descriptions = src.tags(), src.descriptions
        implanted = work / "after_implanted.tif"
        with rasterio.open(implanted, "w", **profile) as dst:
            dst.write(np.clip(np.round(np.nan_to_num(after) * 10000), 1, 65535).astype("uint16"))
            dst.update_tags(**tags)
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d or "")
        objects, n = ndimage.label(labels > 0)
        pixel_m2 = abs(pair.grid.transform.a * pair.grid.transform.e)
        sizes = np.bincount(objects.ravel(), minlength=n + 1) * pixel_m2
        cats = [CLASSIFIED_IDS[int(np.bincount(labels[objects == k]).argmax()) - 1] if k else "" for k in range(n + 1)]
        judged = [k for k in range(1, n + 1) if sizes[k] >= get_category(cats[k]).min_area_m2]  # above the unit
        near_implants = ndimage.binary_dilation(labels > 0, iterations=2)
        for detector in detectors:
            result = detect(folder / "before.tif", implanted, work / detector, detector, radiometry="L1C")
            polys = result.polygons
            flagged = {c: pair.grid.mask(list(polys.geometry[polys.category == c])) for c in set(cats[1:])}
            found = sum(int(flagged[cats[k]][objects == k].any()) for k in judged)
            outside = pair.grid.mask(list(polys.geometry)) & ~near_implants
            rows.append({"pair": name, "detector": detector, "implanted": len(judged), "found": found,
                         "recall": round(found / len(judged), 2) if judged else float("nan"),
                         "flagged_outside_km2_per_100km2": round(100 * float(outside.sum()) * pixel_m2
                                                                 / result.seen_m2, 2)})
    return pd.DataFrame(rows)
