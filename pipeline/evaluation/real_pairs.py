"""Detectors on real Sentinel-2 pairs without labels: the area they flag, real change and false
alarms together (an upper bound on false alarms)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from detectors import detector_label


def flagged_on_real_pairs(detectors: list[str], pairs: Path, out: Path, names: tuple[str, ...],
                          progress: bool = True) -> pd.DataFrame:
    """Area flagged per 100 km² of seen ground on each named pair, as `detect` runs by default."""
    from pipeline.detect import detect

    rows = []
    for d in tqdm([Path(pairs) / n for n in names], desc="real pairs", unit="pair", disable=not progress):
        for name in detectors:
            result = detect(d / "before.tif", d / "after.tif", out / d.name / detector_label(name), name)
            seen_km2 = result.seen_m2 / 1e6
            area = result.polygons.area_m2.sum() / 1e6 if len(result.polygons) else 0.0
            rows.append({"pair": d.name, "detector": name,
                         "km2": round(seen_km2, 1), "flagged_km2_per_100km2": round(100 * area / seen_km2, 2),
                         **{c: round(100 * result.polygons.area_m2[result.polygons.category == c].sum() / 1e6
                                     / seen_km2, 2) for c in sorted(set(result.polygons.category))}})
    return pd.DataFrame(rows).fillna(0.0)
