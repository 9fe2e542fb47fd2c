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


def _one_yard(tmp_path: Path) -> tuple[Path, Path]:
    """Vegetation, and a 20 x 25 px yard on the after date that the baseline reads as temporary land
    at probability 0.64-0.76, with any-change probability 0.99."""
    rng = np.random.default_rng(0)
    veg = np.array([0.04, 0.07, 0.06, 0.25, 0.20, 0.11])[:, None, None] * rng.uniform(0.95, 1.05, (6, 64, 64))
    after = veg.copy()
    after[:, 20:40, 20:45] = np.array([0.2, 0.24, 0.28, 0.32, 0.38, 0.34])[:, None, None]
    return write_s2(tmp_path / "b.tif", veg, "2024-07-28"), write_s2(tmp_path / "a.tif", after, "2025-08-02")


@pytest.mark.parametrize(("given", "found"), [(None, ["temporary_land"]), ("temporary_land=0.8", ["other"]),
                                              ("temporary_land=0.8,other=0.995", [])])
def test_threshold_overrides_decide_what_detect_writes_and_are_recorded(tmp_path: Path, given: str | None,
                                                                          found: list[str]) -> None:
    b, a = _one_yard(tmp_path)
    done = _eoleads("detect", str(b), str(a), "--out", str(tmp_path / "o"), "--detector", "baseline",
                    *(["--threshold", given] if given else []))
    assert done.returncode == 0, done.stderr
    assert list(pyogrio.read_dataframe(tmp_path / "o" / "changes.gpkg").category) == found
    with rasterio.open(tmp_path / "o" / "probabilities.tif") as src:
        applied = dict(item.split("=") for item in src.tags()["THRESHOLDS"].split(","))
    assert applied == {**dict.fromkeys(CATEGORY_IDS, "0.5"), **dict(
        item.split("=") for item in (given or "").split(",") if item)}


@pytest.mark.parametrize(("given", "named"), [("other=1", "'thresholds.other'"), ("shrubs=0.3", "'thresholds.shrubs'"),
                                              ("other", "CATEGORY=VALUE")])
def test_a_bad_threshold_is_refused_with_the_category_and_the_fix(tmp_path: Path, given: str, named: str) -> None:
    b, a = _one_yard(tmp_path)
    done = _eoleads("detect", str(b), str(a), "--out", str(tmp_path / "o"), "--detector", "baseline",
                    "--threshold", given)
    assert done.returncode != 0 and named in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o" / "changes.gpkg").exists()


def test_detect_refuses_a_file_without_the_model_bands(tmp_path: Path) -> None:
    refl = np.full((6, 32, 32), 0.1)
    b = write_s2(tmp_path / "b.tif", refl, "2024-07-28", descriptions=("B02", "B03", "B04", "B08", "B11", "B8A"))
    a = write_s2(tmp_path / "a.tif", refl, "2025-08-02")
    done = _eoleads("detect", str(b), str(a), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "b.tif" in done.stderr and "B12" in done.stderr


def _three_changes(tmp_path: Path) -> tuple[Path, Path]:
    """A UTM pair with three separate bare patches, each well above the mapping unit."""
    rng = np.random.default_rng(0)
    veg = np.array([0.04, 0.07, 0.06, 0.25, 0.20, 0.11])[:, None, None] * rng.uniform(0.95, 1.05, (6, 128, 128))
    after = veg.copy()
    for r, c in ((20, 20), (20, 80), (80, 50)):
        after[:, r:r + 20, c:c + 25] = np.array([0.2, 0.24, 0.28, 0.32, 0.38, 0.34])[:, None, None]
    return write_s2(tmp_path / "b.tif", veg, "2024-07-28"), write_s2(tmp_path / "a.tif", after, "2025-08-02")


def _to_wgs84(path: Path) -> Path:
    from rasterio.enums import Resampling
    from rasterio.warp import calculate_default_transform, reproject

    out = path.with_name(f"{path.stem}_4326.tif")
    with rasterio.open(path) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height,
                                                               *src.bounds)
        profile = {**src.profile, "crs": "EPSG:4326", "transform": transform, "width": width, "height": height}
        with rasterio.open(out, "w", **profile) as dst:
            for i in range(1, src.count + 1):
                reproject(rasterio.band(src, i), rasterio.band(dst, i), resampling=Resampling.nearest)
            dst.descriptions = src.descriptions
            dst.update_tags(**src.tags())
    return out


def test_a_pair_in_degrees_finds_the_same_changes_as_in_utm(tmp_path: Path, capsys) -> None:
    from pipeline.cli import main

    before, after = _three_changes(tmp_path)
    assert main(["detect", str(before), str(after), "--out", str(tmp_path / "utm"), "--detector", "baseline"]) == 0
    assert main(["detect", str(_to_wgs84(before)), str(_to_wgs84(after)), "--out", str(tmp_path / "deg"),
                 "--detector", "baseline"]) == 0
    assert "detected on its UTM zone EPSG:32650" in capsys.readouterr().out
    utm = pyogrio.read_dataframe(tmp_path / "utm" / "changes.gpkg").sort_values("area_m2")
    deg = pyogrio.read_dataframe(tmp_path / "deg" / "changes.gpkg").sort_values("area_m2")
    assert len(utm) == len(deg) == 3  # in degrees, the mapping unit used to swallow them all
    np.testing.assert_allclose(deg.area_m2, utm.area_m2, rtol=0.15)
    with rasterio.open(tmp_path / "deg" / "probabilities.tif") as src:
        assert src.crs.to_epsg() == 32650 and 8 < src.transform.a < 12


def _compressed(path: Path) -> bytearray:
    """The file rewritten in deflate-compressed tiles, as products are delivered; its bytes."""
    with rasterio.open(path) as src:
        profile = {**src.profile, "compress": "deflate", "tiled": True, "blockxsize": 64, "blockysize": 64}
        data, tags, descriptions = src.read(), src.tags(), src.descriptions
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
        dst.update_tags(**tags)
    return bytearray(path.read_bytes())


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbled", "header"])
def test_a_missing_or_damaged_file_names_the_file_without_a_traceback(tmp_path: Path, capsys, damage: str) -> None:
    from pipeline.cli import main

    before, after = _three_changes(tmp_path)
    if damage == "missing":
        after.unlink()
    elif damage == "truncated":  # header intact, the last rows cut off
        after.write_bytes(after.read_bytes()[: after.stat().st_size * 3 // 4])
    elif damage == "garbled":  # header intact, compressed tiles overwritten
        raw = _compressed(after)
        middle = len(raw) // 2
        raw[middle:middle + 4000] = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
        after.write_bytes(raw)
    else:
        after.write_bytes(_compressed(after)[:200])
    assert main(["detect", str(before), str(after), "--out", str(tmp_path / "o"), "--detector", "baseline"]) == 2
    err = capsys.readouterr().err
    assert str(after) in err and "fix:" in err
    assert ("not found" if damage == "missing" else "fetch or export") in err
    assert damage in ("missing", "header") or "its data cannot be read" in err


def test_nonsense_radiometric_metadata_is_refused(tmp_path: Path, capsys) -> None:
    from pipeline.cli import main

    before, after = _three_changes(tmp_path)
    with rasterio.open(after, "r+") as dst:
        dst.update_tags(QUANTIFICATION_VALUE="0")
    assert main(["detect", str(before), str(after), "--out", str(tmp_path / "o"), "--detector", "baseline"]) == 2
    err = capsys.readouterr().err
    assert "a.tif, field 'QUANTIFICATION_VALUE': 0 is not a scale" in err
