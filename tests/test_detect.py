"""`eoleads detect` on GeoTIFF pairs a GIS user already holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio

from detectors.categories import CATEGORY_IDS
from tests.conftest import write_s2


def _eoleads(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_detect_finds_the_planted_changes_of_the_demo_pair(demo_run: Path, tmp_path: Path) -> None:
    imagery = demo_run / "inputs" / "imagery"
    out = tmp_path / "detect"
    done = _eoleads("detect", str(imagery / "S2_L2A_20240728.tif"), str(imagery / "S2_L2A_20250802.tif"),
                    "--out", str(out), "--zones", str(demo_run / "inputs" / "zones.gpkg"), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    changes = pyogrio.read_dataframe(out / "changes.gpkg", layer="changes")
    with rasterio.open(out / "probabilities.tif") as src:  # every zone given: every category runs
        assert src.descriptions == CATEGORY_IDS
        assert src.dtypes[0] == "uint8" and src.nodata == 255 and src.crs.to_epsg() == 32650
    truth = gpd.read_file(demo_run / "inputs" / "truth.gpkg", layer="changes").to_crs(changes.crs)
    found = [changes[changes.category == t.category].intersects(t.geometry).any() for t in truth.itertuples()]
    assert np.mean(found) >= 0.6  # single cloudy dates, not composites: most planted changes still show
    assert (changes.area_m2 > 0).all() and set(changes.category) <= set(truth.category)


def test_detect_reads_bands_by_index_when_files_do_not_name_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    veg = np.array([0.04, 0.07, 0.06, 0.25, 0.20, 0.11])[:, None, None] * rng.uniform(0.95, 1.05, (6, 64, 64))
    after = veg.copy()
    after[:, 20:40, 20:45] = np.array([0.2, 0.24, 0.28, 0.32, 0.38, 0.34])[:, None, None]
    names = tuple(str(i) for i in range(1, 7))
    b = write_s2(tmp_path / "b.tif", veg, "2024-07-28", descriptions=names)
    a = write_s2(tmp_path / "a.tif", after, "2025-08-02", descriptions=names)
    done = _eoleads("detect", str(b), str(a), "--out", str(tmp_path / "o"), "--radiometry", "L2A",
                    "--bands", "B02=1,B03=2,B04=3,B08=4,B11=5,B12=6", "--detector", "baseline")
    assert done.returncode == 0, done.stderr
    changes = pyogrio.read_dataframe(tmp_path / "o" / "changes.gpkg")
    assert list(changes.category) == ["temporary_land"]
    assert abs(changes.area_m2.iloc[0] - 20 * 25 * 100) < 0.2 * 20 * 25 * 100


def test_detect_refuses_a_file_without_the_model_bands(tmp_path: Path) -> None:
    refl = np.full((6, 32, 32), 0.1)
    b = write_s2(tmp_path / "b.tif", refl, "2024-07-28", descriptions=("B02", "B03", "B04", "B08", "B11", "B8A"))
    a = write_s2(tmp_path / "a.tif", refl, "2025-08-02")
    done = _eoleads("detect", str(b), str(a), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "b.tif" in done.stderr and "B12" in done.stderr
