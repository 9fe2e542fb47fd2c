"""A run over a region: one damaged file fails only the cells it reaches, loudly, and is retried."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import yaml

pytestmark = pytest.mark.slow  # runs the demo region


def test_a_damaged_file_fails_its_cells_loudly_and_they_are_retried(demo_run: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    shutil.copytree(demo_run / "inputs" / "imagery", imagery)
    damaged = imagery / "S2_L2A_20250802.tif"
    intact = damaged.read_bytes()
    with open(damaged, "r+b") as fh:  # a download cut short: the southern tiles are missing
        fh.truncate(int(len(intact) * 0.6))
    cfg = yaml.safe_load((demo_run / "demo.yaml").read_text(encoding="utf-8"))
    cfg.update(source={"type": "local", "paths": [str(imagery / "*.tif")]}, output=str(tmp_path / "out"),
               evidence=False, aoi=[str(Path(p) if os.path.isabs(p) else demo_run / p) for p in cfg["aoi"]])
    cfg["permits"][0]["path"] = str(demo_run / "inputs" / "permits.gpkg")
    cfg["zones"][0]["path"] = str(demo_run / "inputs" / "zones.gpkg")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(path), "-q"], capture_output=True,
                              text=True)

    first = run()
    assert first.returncode == 1, first.stderr  # the leads are incomplete: not a success
    assert "ERROR" in first.stdout and "not looked at" in first.stdout
    cells = pyogrio.read_dataframe(tmp_path / "out" / "leads.gpkg", layer="cells")
    failed = set(cells.cell_id[cells.status == "failed"])
    assert failed and (cells.status == "done").any()  # only the cells the damage reaches
    table = dict(pyogrio.read_dataframe(tmp_path / "out" / "leads.gpkg", layer="run")[["key", "value"]].values)
    assert int(table["count_cells_failed"]) == len(failed)
    assert not any((tmp_path / "out" / "cells" / c).exists() for c in failed)  # not committed as finished

    damaged.write_bytes(intact)  # the file is fetched again
    second = run()
    assert second.returncode == 0, second.stdout + second.stderr
    cells = pyogrio.read_dataframe(tmp_path / "out" / "leads.gpkg", layer="cells")
    assert (cells.status == "done").all()
    leads = pyogrio.read_dataframe(tmp_path / "out" / "leads.gpkg", layer="leads")
    assert len(leads) == len(pyogrio.read_dataframe(demo_run / "leads.gpkg", layer="leads"))


def test_changes_without_their_zone_layer_are_reported_as_other(demo_run: Path, tmp_path: Path) -> None:
    import geopandas as gpd

    from pipeline.config import load_config
    from pipeline.run import run

    cfg = yaml.safe_load((demo_run / "demo.yaml").read_text(encoding="utf-8"))
    cfg["zones"] = [z for z in cfg["zones"] if z.get("zone") == "lake"]  # no layer for steppe, rivers, black soil
    cfg["source"]["folder"] = str(demo_run / "inputs")
    cfg["permits"][0]["path"] = str(demo_run / "inputs" / "permits.gpkg")
    cfg.update(output=str(tmp_path / "out"), aoi=[str(demo_run / p) if not os.path.isabs(p) else p
                                                  for p in cfg["aoi"]])
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    result = run(load_config(path), path, progress=False)
    assert any("'grassland' was not run, its changes are reported as 'other'" in n for n in result.notes)

    leads = gpd.read_file(result.geopackage, layer="leads")
    other = leads[leads.category == "other"]
    truth = gpd.read_file(demo_run / "inputs" / "truth.gpkg", layer="changes").to_crs(leads.crs)
    unzoned = truth[truth.category.isin(["grassland", "black_soil", "river"]) & truth.expected_lead]
    found = [other.intersects(g).any() for g in unzoned.geometry]
    assert np.mean(found) >= 0.6  # not dropped for want of a zone layer
    assert set(other.category_zh) == {"其他地表变化"}
    for lead in other.itertuples():
        assert (tmp_path / "out" / lead.evidence).exists()  # before/after image, as for every lead
    styles = pyogrio.read_dataframe(result.geopackage, layer="layer_styles")
    assert "other" in styles.styleQML[styles.f_table_name == "leads"].iloc[0]
