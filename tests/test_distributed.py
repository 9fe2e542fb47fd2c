"""Cells as Dask tasks: two worker processes give the GeoPackage one process gives, a cell that fails on a
worker is recorded and retried, and a run resumes what a distributed run left."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyogrio
import pytest
import yaml
from distributed import LocalCluster

from detectors import DEFAULT_MODEL
from detectors.learned import cpu_runs_natively
from detectors.model_card import ModelError
from pipeline.cluster import _quiet_teardown
from pipeline.config import load_config
from pipeline.run import run
from tests.conftest import hears_ctrl_c
from tests.test_faults import LAYERS, _layers
from tests.test_run import eoleads, write_tiny_region

pytestmark = pytest.mark.slow  # starts worker processes and runs the tiny region several times


@pytest.fixture(scope="module")
def scheduler() -> str:
    """Two single-threaded worker processes, as one GPU each would be."""
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny region run in this process: its layers."""
    folder = tmp_path_factory.mktemp("in-process")
    path = _tiny_region(folder)
    result = run(load_config(path), path, progress=False)
    assert result.exit_code == 0 and len(result.leads) == 3
    return _layers(folder / "out")


def _same_layers(out: Path, expected: dict) -> None:
    got = _layers(out)
    for layer in LAYERS:
        a, b = got[layer], expected[layer]
        assert list(a.columns) == list(b.columns) and len(a) == len(b), layer
        assert a.drop(columns="geometry").equals(b.drop(columns="geometry")), layer
        assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all(), layer


def _tiny_region(folder: Path, **changes) -> Path:
    """The tiny region without a lead register: a run's leads then do not depend on the runs before it."""
    path = write_tiny_region(folder)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump({**config, "register": None, **changes}), encoding="utf-8")
    return path


def _on_cluster(folder: Path, scheduler: str, **changes) -> Path:
    return _tiny_region(folder, cluster={"scheduler": scheduler}, **changes)


def test_two_worker_processes_give_the_geopackage_of_one(scheduler: str, reference: dict, tmp_path: Path) -> None:
    path = _on_cluster(tmp_path, scheduler)
    result = run(load_config(path), path, progress=False)
    assert result.exit_code == 0 and result.counts["cells"] == 16 and result.counts["cells_resumed"] == 0
    assert result.timer.calls["detect"] == 16  # the workers' stage times reach the run table
    _same_layers(tmp_path / "out", reference)


def test_a_cell_failing_on_a_worker_is_recorded_and_retried(scheduler: str, reference: dict, tmp_path: Path) -> None:
    path = _on_cluster(tmp_path, scheduler)  # the dossier is written too, without the damaged imagery
    damaged = tmp_path / "imagery" / "after.tif"
    intact = damaged.read_bytes()
    with open(damaged, "r+b") as fh:  # a download cut short: the southern rows are missing
        fh.truncate(int(len(intact) * 0.6))
    first = run(load_config(path), path, progress=False)
    assert first.exit_code == 1 and first.failed_cells and first.counts["cells_failed"] < 16
    cells = pyogrio.read_dataframe(tmp_path / "out" / "leads.gpkg", layer="cells")
    assert set(cells.cell_id[cells.status == "failed"]) == set(first.failed_cells)
    assert all("failed" in r for r in cells.reason[cells.status == "failed"])
    assert not any((tmp_path / "out" / "cells" / c).exists() for c in first.failed_cells)  # not committed

    damaged.write_bytes(intact)  # the file is fetched again: the next run does the failed cells only
    second = run(load_config(path), path, progress=False)
    assert second.exit_code == 0 and second.counts["cells_resumed"] == 16 - len(first.failed_cells)
    _same_layers(tmp_path / "out", reference)


def test_a_run_resumes_what_a_distributed_shard_left(scheduler: str, reference: dict, tmp_path: Path) -> None:
    path = _on_cluster(tmp_path, scheduler)
    done = eoleads("run", str(path), "-q", "--shard", "1/2", "--scheduler", scheduler)
    assert done.returncode == 0, done.stderr
    assert "8 cells processed, 8 of 16 still pending" in done.stdout
    finished = {p.name for p in (tmp_path / "out" / "cells").iterdir() if (p / "cell.json").exists()}
    assert len(finished) == 8

    rest = eoleads("run", str(path), "-q", "--workers", "2")  # a local cluster of its own this time
    assert rest.returncode == 0, rest.stdout + rest.stderr
    result = run(load_config(path), path, progress=False)  # everything finished: only the merge again
    assert result.counts["cells_resumed"] == 16
    _same_layers(tmp_path / "out", reference)


def test_a_precision_the_workers_cannot_run_stops_the_run_with_its_error(scheduler: str, tmp_path: Path) -> None:
    """The same for every cell, so not a cell's failure to retry: raised where the run is driven, nothing committed."""
    if cpu_runs_natively("fp16"):
        pytest.skip("this CPU runs fp16 natively")
    path = _on_cluster(tmp_path, scheduler, detection={"detector": DEFAULT_MODEL, "precision": "fp16"})
    with pytest.raises(ModelError, match="this CPU has no native fp16 arithmetic"):
        run(load_config(path), path, progress=False)
    assert not any((tmp_path / "out" / "cells").glob("*/cell.json"))


def test_an_unreachable_scheduler_is_an_input_error(tmp_path: Path) -> None:
    path = write_tiny_region(tmp_path)
    done = eoleads("run", str(path), "-q", "--scheduler", "tcp://127.0.0.1:9")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no Dask scheduler answers at tcp://127.0.0.1:9" in done.stderr and "cluster.scheduler" in done.stderr
    assert not (tmp_path / "out" / "leads.gpkg").exists()



def test_ctrl_c_cancels_the_tasks_stops_the_workers_and_the_same_command_resumes(reference: dict,
                                                                                  tmp_path: Path) -> None:
    path = _tiny_region(tmp_path)
    job = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(path), "-q", "--workers", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=hears_ctrl_c)
    while not list((tmp_path / "out" / "cells").glob("*/cell.json")) and job.poll() is None:
        time.sleep(0.01)
    workers = psutil.Process(job.pid).children(recursive=True)
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr
    assert "interrupted: stopped with " in stderr and " of 16 cells finished" in stderr and "Traceback" not in stderr
    _, alive = psutil.wait_procs(workers, timeout=20)  # a worker's own shutdown may lag its parent's by a moment
    assert workers and not [w for w in alive if w.status() != psutil.STATUS_ZOMBIE]

    again = eoleads("run", str(path), "-q", "--workers", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    _same_layers(tmp_path / "out", reference)


def test_ctrl_c_silences_the_clusters_logs_before_dask_hears_it_and_restores_them() -> None:
    # Dask's client answers a KeyboardInterrupt by scheduling a callback on its loop thread, which
    # can fail and log a traceback before any except clause of ours runs: the silence must come first
    tornado = logging.getLogger("tornado.application")
    heard = []
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background test run ignores it
    try:
        with pytest.raises(KeyboardInterrupt), _quiet_teardown():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            except KeyboardInterrupt:
                heard.append(tornado.isEnabledFor(logging.ERROR))
                raise
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert heard == [False]
    assert tornado.isEnabledFor(logging.ERROR) and logging.getLogger("distributed").isEnabledFor(logging.WARNING)
