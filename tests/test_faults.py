"""A run killed at any point and run again gives the leads an uninterrupted run gives."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyogrio
import pytest

from pipeline.outputs.runfolder import PARTIAL
from tests.test_run import eoleads, write_tiny_region

pytestmark = pytest.mark.slow  # several whole runs in subprocesses

LAYERS = ("leads", "detections", "cells")  # the run table holds timings: not compared


def _layers(out: Path) -> dict:
    """The compared layers, rows in a fixed order (the order cells finish in is not the point)."""
    frames = {}
    for layer in LAYERS:
        frame = pyogrio.read_dataframe(out / "leads.gpkg", layer=layer)
        frames[layer] = frame.sort_values([c for c in frame.columns if c != "geometry"], ignore_index=True)
    return frames


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, float]:
    """The tiny region run once, uninterrupted: its folder, its layers and how long it took."""
    folder = tmp_path_factory.mktemp("reference")
    path = write_tiny_region(folder)
    start = time.monotonic()
    done = eoleads("run", str(path), "-q")
    assert done.returncode == 0, done.stderr
    return folder, _layers(folder / "out"), time.monotonic() - start


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_at_random_and_run_again_gives_the_same_leads(reference, tmp_path: Path, seed: int) -> None:
    folder, expected, duration = reference
    for name in ("imagery", "aoi.geojson", "run.yaml"):  # the same inputs, a new output folder
        (shutil.copytree if (folder / name).is_dir() else shutil.copy)(folder / name, tmp_path / name)
    path = tmp_path / "run.yaml"
    rng = random.Random(seed)
    for _ in range(2):  # killed twice, at different points
        job = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(path), "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            job.wait(timeout=rng.uniform(0.3, 1.0) * duration)
        except subprocess.TimeoutExpired:
            job.send_signal(signal.SIGKILL)
            job.wait()
    done = eoleads("run", str(path), "-q")
    assert done.returncode == 0, done.stderr
    got = _layers(tmp_path / "out")
    for layer in LAYERS:
        a, b = got[layer], expected[layer]
        assert list(a.columns) == list(b.columns) and len(a) == len(b), layer
        assert a.drop(columns="geometry").equals(b.drop(columns="geometry")), layer
        assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all(), layer
    leftovers = [p for p in (tmp_path / "out").rglob("*") if PARTIAL.match(p.name)]
    assert not leftovers  # what the killed runs had in flight was cleared
