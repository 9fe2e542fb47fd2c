"""Imagery a run cannot use is reported loudly, never read as "no violations"."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import yaml
from shapely.geometry import box

from pipeline.cli import main
from tests.conftest import write_s2

UTM = "EPSG:32650"
AOI = box(500700, 5428100, 501500, 5428600)  # 4 cells of 64 px inside the imagery
FAR = box(560100, 5480420, 561800, 5481860)  # 9 cells 60 km from it


def _veg(cols: int = 256) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.array([0.04, 0.07, 0.06, 0.25, 0.20, 0.11])[:, None, None] * rng.uniform(0.95, 1.05, (6, 256, cols))


def _config(tmp_path: Path, aoi=AOI, monitoring=("2025-07-01", "2025-08-31"), **extra) -> Path:
    gpd.GeoDataFrame(geometry=[aoi], crs=UTM).to_crs("EPSG:4326").to_file(tmp_path / "aoi.geojson")
    cfg = {"name": "test", "aoi": ["aoi.geojson"], "output": "out", "evidence": False, "device": "cpu",
           "windows": {"baseline": {"start": "2024-07-01", "end": "2024-08-31"},
                       "monitoring": {"start": monitoring[0], "end": monitoring[1]}},
           "source": {"type": "local", "paths": ["imagery/*.tif"]},
           "grid": {"cell_size_px": 64, "margin_px": 8}, "detection": {"detector": "baseline"}, **extra}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _imagery(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "imagery").mkdir(exist_ok=True)
    return (write_s2(tmp_path / "imagery" / "before.tif", _veg(), "2024-07-28"),
            write_s2(tmp_path / "imagery" / "after.tif", _veg(), "2025-08-02"))


def _outputs(tmp_path: Path) -> tuple[dict, dict, gpd.GeoDataFrame]:
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    gpkg = tmp_path / "out" / "leads.gpkg"
    table = dict(pyogrio.read_dataframe(gpkg, layer="run")[["key", "value"]].values)
    return summary, table, pyogrio.read_dataframe(gpkg, layer="cells")


def _finished(tmp_path: Path) -> list[str]:
    return sorted(p.parent.name for p in (tmp_path / "out" / "cells").glob("*/cell.json"))


def test_all_nodata_monitoring_scene_fails_the_run_and_its_cells_are_retried(tmp_path, capsys):
    path = _config(tmp_path)
    _, after = _imagery(tmp_path)
    with rasterio.open(after, "r+") as dst:  # a scene delivered empty: every pixel no data
        dst.write(np.zeros((dst.count, dst.height, dst.width), dtype="uint16"))
    assert main(["run", str(path), "-q"]) == 1
    out = capsys.readouterr().out
    assert "ERROR: 4 of 4 cell(s) had no usable imagery" in out
    assert "acquisitions found: baseline: 2024-07-28; monitoring: none" in out
    summary, table, cells = _outputs(tmp_path)
    assert summary["counts"]["cells_unobserved"] == 4 and summary["acquisitions"]["monitoring"] == []
    assert table["count_cells_unobserved"] == "4" and table["acquisitions_monitoring"] == "none"
    assert table["note_1"].startswith("WARNING: 4 of 4 cell(s) were not seen")
    assert (cells.status == "unobserved").all() and cells.reason.str.contains("monitoring window").all()
    assert _finished(tmp_path) == []  # not stored as finished

    write_s2(after, _veg(), "2025-08-02")  # the scene is delivered again, whole
    assert main(["run", str(path), "-q"]) == 0
    _, table, cells = _outputs(tmp_path)
    assert (cells.status == "done").all() and len(_finished(tmp_path)) == 4
    assert table["acquisitions_monitoring"] == "2025-08-02"


def test_windows_that_match_no_scene_fail_even_with_partial_coverage_allowed(tmp_path, capsys):
    _imagery(tmp_path)
    path = _config(tmp_path, monitoring=("2026-07-01", "2026-08-31"))
    assert main(["run", str(path), "-q", "--allow-partial"]) == 1  # nothing seen is not partial coverage
    out = capsys.readouterr().out
    assert "ERROR" in out and "monitoring: none" in out
    summary, _, _ = _outputs(tmp_path)
    assert summary["counts"]["leads"] == 0 and summary["counts"]["cells_unobserved"] == 4


def test_aoi_outside_the_imagery_is_one_note_for_all_its_cells(tmp_path, capsys):
    _imagery(tmp_path)
    assert main(["run", str(_config(tmp_path, aoi=FAR)), "-q"]) == 1
    summary, _, cells = _outputs(tmp_path)
    assert len(cells) == 9 and (cells.status == "unobserved").all()
    assert summary["acquisitions"] == {"baseline": [], "monitoring": []}
    per_cell = [n for n in summary["notes"] if "cell(s) (" in n]
    assert len(per_cell) == 1  # one note for the nine cells, not one each
    assert per_cell[0].startswith("9 cell(s) (")
    assert "and 4 more) not seen: no valid pixel in the baseline" in per_cell[0]


@pytest.mark.parametrize("allow", ["flag", "config", None])
def test_partial_coverage_exits_non_zero_unless_allowed(tmp_path, capsys, allow):
    _imagery(tmp_path)
    after = tmp_path / "imagery" / "after.tif"
    write_s2(after, _veg(110), "2025-08-02")  # covers the western cells only
    path = _config(tmp_path, **({"allow_partial_coverage": True} if allow == "config" else {}))
    code = main(["run", str(path), "-q", *(["--allow-partial"] if allow == "flag" else [])])
    assert code == (1 if allow is None else 0)
    out = capsys.readouterr().out
    assert ("ERROR" if allow is None else "WARNING") + ": 2 of 4 cell(s) had no usable imagery" in out
    _, _, cells = _outputs(tmp_path)
    assert sorted(cells.status) == ["done", "done", "unobserved", "unobserved"]
    assert len(_finished(tmp_path)) == 2


def test_a_truncated_tile_fails_the_cells_it_reaches_naming_the_file(tmp_path, capsys):
    _, after = _imagery(tmp_path)
    data = after.read_bytes()
    after.write_bytes(data[: int(len(data) * 0.8)])  # a download cut short: the southern rows are missing
    assert main(["run", str(_config(tmp_path)), "-q"]) == 1
    out = capsys.readouterr().out
    assert "ERROR: 2 cell(s) failed" in out
    _, _, cells = _outputs(tmp_path)
    failed = cells[cells.status == "failed"]
    assert len(failed) == 2 and (cells.status == "done").sum() == 2
    assert failed.reason.str.contains("after.tif").all() and failed.reason.str.contains("fetch or export").all()
