"""A run over a region: one damaged file fails only the cells it reaches, loudly, and is retried; the run
folder keeps the user's files, refuses stale cells and a second job, and names a full or locked disk."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import yaml
from affine import Affine
from pyproj import Transformer

from detectors import DEFAULT_MODEL
from detectors.learned import cpu_runs_natively
from detectors.model_card import ModelError
from pipeline.config import load_config
from pipeline.errors import InputError
from pipeline.run import run
from tests.conftest import hears_ctrl_c, write_s2
from tests.outputs.test_runfolder import FolderHolder

VEGETATION = np.array([0.04, 0.07, 0.06, 0.25, 0.20, 0.11])
BARE = np.array([0.2, 0.24, 0.28, 0.32, 0.38, 0.34])


def write_tiny_region(folder: Path) -> Path:
    """A 16-cell region of grass with three patches cleared to bare soil in 2025, and its configuration.

    Small cells and the baseline detector keep a whole run to seconds, so runs can be interrupted,
    damaged and repeated.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    size, x0, y0 = 480, 499_200, 5_431_000
    transform = Affine(10, 0, x0, 0, -10, y0)
    before, after = (VEGETATION[:, None, None] * rng.uniform(0.95, 1.05, (6, size, size)) for _ in range(2))
    for r, c in ((150, 150), (200, 250), (300, 180)):  # the second one straddles two cells
        after[:, r:r + 12, c:c + 15] = BARE[:, None, None]
    (folder / "imagery").mkdir(exist_ok=True)
    write_s2(folder / "imagery" / "before.tif", before, "2024-07-28", transform=transform)
    write_s2(folder / "imagery" / "after.tif", after, "2025-08-02", transform=transform)
    to_wgs84 = Transformer.from_crs("EPSG:32650", "EPSG:4326", always_xy=True)
    ring = [to_wgs84.transform(x0 + dx, y0 - dy) for dx, dy in ((900, 900), (3900, 900), (3900, 3900), (900, 3900),
                                                                (900, 900))]
    (folder / "aoi.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    config = {"name": "tiny", "aoi": ["aoi.geojson"],
              "windows": {"baseline": {"start": "2024-07-01", "end": "2024-08-31"},
                          "monitoring": {"start": "2025-07-01", "end": "2025-08-31"}},
              "source": {"type": "local", "paths": ["imagery/*.tif"]}, "output": "out",
              "grid": {"cell_size_px": 128}, "detection": {"detector": "baseline"}, "device": "cpu"}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def eoleads(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, **kwargs)


def _edit(path: Path, **changes) -> None:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump({**config, **changes}), encoding="utf-8")


def test_a_users_files_in_the_output_folder_survive_runs_and_fresh(tmp_path: Path) -> None:
    path = write_tiny_region(tmp_path)
    out = tmp_path / "out"
    (out / "evidence").mkdir(parents=True)
    mine = [out / "notes.txt", out / "evidence" / "site-visit.txt"]
    for p in mine:
        p.write_text("mine")
    result = run(load_config(path), path, progress=False)
    assert len(result.leads) == 3
    images = [out / e for e in result.leads.evidence]
    assert all(p.exists() for p in images) and (out / "leads_map.png").exists()

    _edit(path, evidence=False)  # no pictures this time: eoleads' own go, the user's stay
    result = run(load_config(path), path, progress=False)
    assert result.counts["cells_resumed"] == 16
    assert not any(p.exists() for p in images) and not (out / "leads_map.png").exists()
    assert all(p.read_text() == "mine" for p in mine)

    _edit(path, evidence=True)
    result = run(load_config(path), path, fresh=True, progress=False)
    assert result.counts["cells_resumed"] == 0 and all((out / e).exists() for e in result.leads.evidence)
    assert all(p.read_text() == "mine" for p in mine)


def test_a_lost_manifest_does_not_let_stale_cells_be_reused(tmp_path: Path) -> None:
    path = write_tiny_region(tmp_path)
    run(load_config(path), path, progress=False)
    (tmp_path / "out" / "manifest.json").unlink()
    _edit(path, grid={"cell_size_px": 128, "margin_px": 16})  # the cells would come out differently
    with pytest.raises(InputError, match="different configuration") as err:
        run(load_config(path), path, progress=False)
    assert Path(err.value.path).name == "cell.json" and "--fresh" in err.value.fix
    assert run(load_config(path), path, fresh=True, progress=False).counts["cells_resumed"] == 0


def test_damaged_cells_are_set_aside_and_done_again(tmp_path: Path) -> None:
    path = write_tiny_region(tmp_path)
    first = run(load_config(path), path, progress=False)
    cells = sorted(p for p in (tmp_path / "out" / "cells").iterdir() if p.is_dir())
    with_changes = [p for p in cells if json.loads((p / "cell.json").read_text())["detections"]]
    (cells[0] / "cell.json").write_bytes(b"\x00" * 10)  # a disk that lost a block
    (with_changes[0] / "detections.gpkg").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    second = run(load_config(path), path, progress=False)
    for cell in (cells[0], with_changes[0]):
        assert any(f"cell {cell.name} was damaged" in n and "done again" in n for n in second.notes)
    assert second.counts["cells_resumed"] == 15  # the one with an unreadable record was redone in the loop
    assert sorted(second.leads.lead_id) == sorted(first.leads.lead_id)
    assert len(list((tmp_path / "out" / "cells" / "damaged").iterdir())) == 2


def test_a_run_resumed_at_another_precision_keeps_its_cells_and_each_says_what_it_ran_in(tmp_path: Path) -> None:
    path = write_tiny_region(tmp_path)
    _edit(path, detection={"detector": DEFAULT_MODEL, "precision": "fp32"})
    first = run(load_config(path), path, progress=False)
    cells = pyogrio.read_dataframe(tmp_path / "out" / "leads.gpkg", layer="cells")
    assert (cells.status == "done").all() and (cells.arithmetic == "fp32 on cpu").all()
    _edit(path, detection={"detector": DEFAULT_MODEL, "precision": "bf16"})
    if not cpu_runs_natively("bf16"):
        shutil.rmtree(tmp_path / "out" / "cells" / cells.cell_id[0])
        with pytest.raises(ModelError, match="no native bf16"):
            run(load_config(path), path, progress=False)
        return
    assert run(load_config(path), path, progress=False).counts["cells_resumed"] == len(cells)
    redone = cells.cell_id[0]
    shutil.rmtree(tmp_path / "out" / "cells" / redone)
    second = run(load_config(path), path, progress=False)
    assert second.counts["cells_resumed"] == len(cells) - 1
    again = pyogrio.read_dataframe(tmp_path / "out" / "leads.gpkg", layer="cells").set_index("cell_id").arithmetic
    assert again[redone] == "bf16 on cpu" and (again.drop(redone) == "fp32 on cpu").all()
    assert json.loads((tmp_path / "out" / "cells" / redone / "cell.json").read_text())["arithmetic"] == "bf16 on cpu"
    assert len(second.leads) == len(first.leads)


def test_two_shard_jobs_finishing_together_merge_once(tmp_path: Path) -> None:
    path = write_tiny_region(tmp_path)
    jobs = [subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(path), "-q", "--shard", shard],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for shard in ("1/2", "2/2")]
    outs = [job.communicate(timeout=300) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outs
    assert sum("leads written to" in stdout for stdout, _ in outs) == 1
    cells = pyogrio.read_dataframe(tmp_path / "out" / "leads.gpkg", layer="cells")
    assert len(cells) == 16 and (cells.status == "done").all()
    assert len(pyogrio.read_dataframe(tmp_path / "out" / "leads.gpkg", layer="leads")) == 3


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path: Path) -> None:
    path = write_tiny_region(tmp_path)
    with FolderHolder(path, tmp_path / "out") as holder:
        done = eoleads("run", str(path), "-q")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{tmp_path / 'out'}: another eoleads run is working in this folder (pid {holder.pid}" in done.stderr


def test_ctrl_c_says_where_the_run_stopped_and_the_same_command_resumes(tmp_path: Path) -> None:
    path = write_tiny_region(tmp_path)
    job = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(path), "-q"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, preexec_fn=hears_ctrl_c)
    while not list((tmp_path / "out" / "cells").glob("*/cell.json")) and job.poll() is None:
        time.sleep(0.01)
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr
    assert "interrupted: stopped with " in stderr and " of 16 cells finished" in stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    again = eoleads("run", str(path), "-q")
    assert again.returncode == 0, again.stderr
    table = dict(pyogrio.read_dataframe(tmp_path / "out" / "leads.gpkg", layer="run")[["key", "value"]].values)
    assert int(table["count_cells_resumed"]) >= 1


def test_an_output_path_that_is_a_file_is_named(tmp_path: Path) -> None:
    path = write_tiny_region(tmp_path)
    (tmp_path / "out").write_text("a file")
    done = eoleads("run", str(path), "-q")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{tmp_path / 'out'}, field 'output': is a file, not a folder" in done.stderr


def test_a_read_only_output_folder_is_named(tmp_path: Path) -> None:
    path = write_tiny_region(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    if os.geteuid() == 0:  # permissions do not stop root; an immutable folder does
        if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode:
            pytest.skip("no way to make a folder read-only for root here")
    else:
        out.chmod(0o555)
    try:
        done = eoleads("run", str(path), "-q")
    finally:
        subprocess.run(["chattr", "-i", str(out)], capture_output=True) if os.geteuid() == 0 else out.chmod(0o755)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: {out}: could not be written" in done.stderr
    assert "make the folder writable" in done.stderr


def test_a_full_disk_is_named_with_the_fix(tmp_path: Path) -> None:
    path = write_tiny_region(tmp_path)

    def small_disk() -> None:  # files stop growing at 60 kB: the cells' GeoPackages do not fit
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    done = eoleads("run", str(path), "-q", preexec_fn=small_disk)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"error: {tmp_path / 'out'}" in done.stderr and "could not be written: the file grew larger" in done.stderr
    assert "free space on that disk" in done.stderr and "gpkg_contents" not in done.stderr


@pytest.mark.slow  # runs the demo region
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


@pytest.mark.slow  # runs the demo region
def test_changes_without_their_zone_layer_are_reported_as_other(demo_run: Path, tmp_path: Path) -> None:
    import geopandas as gpd

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
