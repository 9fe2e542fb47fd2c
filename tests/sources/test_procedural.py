"""The procedural source: imagery computed from world coordinates, the same wherever and whenever it is asked
for, with changes only in the later window, and no file written."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import yaml
from affine import Affine
from pyproj import Transformer

from pipeline.config import DateRange, load_config
from pipeline.sources.procedural import ProceduralSource, acquisition_date
from pipeline.sources.scene import ReadGrid

BEFORE = DateRange(start=date(2024, 7, 1), end=date(2024, 8, 31))
AFTER = DateRange(start=date(2025, 7, 1), end=date(2025, 8, 31))


def _grid(col: int, row: int, size: int = 256, halo: int = 16) -> ReadGrid:
    extent = size * 10
    return ReadGrid("EPSG:32650", Affine(10, 0, 500_000 + col * extent - halo * 10, 0, -10,
                                         5_400_000 + (row + 1) * extent + halo * 10), size + 2 * halo,
                    size + 2 * halo)


def test_the_same_pixels_whoever_asks() -> None:
    a, b = ProceduralSource(seed=3), ProceduralSource(seed=3)
    first, again = a.composite(_grid(0, 0), AFTER), b.composite(_grid(0, 0), AFTER)
    assert np.array_equal(first.reflectance, again.reflectance, equal_nan=True)
    assert np.array_equal(first.valid, again.valid) and first.dates == [acquisition_date(AFTER)]
    right = a.composite(_grid(1, 0), AFTER)  # the neighbour's halo is this cell's edge, pixel for pixel
    assert np.array_equal(first.reflectance[:, :, -32:], right.reflectance[:, :, :32], equal_nan=True)
    other = ProceduralSource(seed=4).composite(_grid(0, 0), AFTER)
    assert not np.array_equal(first.reflectance, other.reflectance, equal_nan=True)


def test_changes_only_from_their_day_and_clouds_are_not_seen() -> None:
    source = ProceduralSource(seed=1, cloud_cover=0.1)
    grids = [_grid(c, r) for c in range(4) for r in range(4)]
    before = [source.reflectance(g, acquisition_date(BEFORE).replace(year=2024)) for g in grids]
    after = [source.reflectance(g, acquisition_date(BEFORE).replace(year=2025)) for g in grids]
    changed = sum(int((np.abs(b - a).max(axis=0) > 0.1).sum()) for b, a in zip(before, after, strict=True))
    assert changed > 500  # 16 cells of 2.6 km: several new rectangles of 80-220 m
    late = [source.reflectance(g, date(2023, 8, 1)) for g in grids[:2]]  # both before `changes_from`
    early = [source.reflectance(g, date(2024, 8, 1)) for g in grids[:2]]
    assert all(int((np.abs(x - y).max(axis=0) > 0.1).sum()) < 50 for x, y in zip(late, early, strict=True))
    composites = [source.composite(g, AFTER) for g in grids]
    unseen = np.mean([1 - c.valid.mean() for c in composites])
    assert 0.02 < unseen < 0.3
    assert all(np.isnan(c.reflectance[:, ~c.valid]).all() and not np.isnan(c.reflectance[:, c.valid]).any()
               for c in composites)


@pytest.mark.slow  # a whole run of 9 cells
def test_a_run_over_procedural_imagery_finds_its_changes_and_writes_no_imagery(tmp_path: Path) -> None:
    from pipeline.run import run

    to_wgs84 = Transformer.from_crs("EPSG:32650", "EPSG:4326", always_xy=True)
    x0, y0 = 500_000, 5_400_000
    ring = [to_wgs84.transform(x0 + dx, y0 + dy) for dx, dy in ((0, 0), (7680, 0), (7680, 7680), (0, 7680), (0, 0))]
    (tmp_path / "aoi.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    config = {"name": "procedural", "aoi": ["aoi.geojson"], "output": "out", "register": None, "evidence": False,
              "report": False, "windows": {"baseline": {"start": "2024-07-01", "end": "2024-08-31"},
                                           "monitoring": {"start": "2025-07-01", "end": "2025-08-31"}},
              "source": {"type": "procedural", "seed": 2, "change_density": 1.0},
              "grid": {"cell_size_px": 256},
              "detection": {"detector": "baseline"}, "device": "cpu", "allow_partial_coverage": True}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = run(load_config(path), path, progress=False)
    assert result.counts["cells"] >= 9 and result.counts["leads"] > 0
    assert not list(tmp_path.rglob("*imagery*")) and not list(tmp_path.rglob("inputs"))
