import subprocess
import sys

import pytest


def _eoleads(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_reads_well():
    out = _eoleads("--help")
    assert out.returncode == 0
    for word in ("demo", "run", "simulate", "线索"):
        assert word in out.stdout


def test_bad_configuration_is_an_error_without_traceback(tmp_path):
    cfg = tmp_path / "my-run.yaml"
    cfg.write_text("name: x\naoi: [a.geojson]\nwindows: {}\nsource: {type: sentinel}\noutput: out\n")
    out = _eoleads("run", str(cfg))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "my-run.yaml" in out.stderr and "field 'source'" in out.stderr and "'local', 'simulated'" in out.stderr


def test_missing_aoi_file_is_an_error_without_traceback(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("name: x\naoi: [missing.geojson]\nwindows: {baseline: {start: 2024-07-01, end: 2024-08-31}, "
                   "monitoring: {start: 2025-07-01, end: 2025-08-31}}\nsource: {type: simulated}\noutput: out\n")
    out = _eoleads("run", str(cfg))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "missing.geojson" in out.stderr and "AOI file not found" in out.stderr


@pytest.mark.slow
def test_evaluate_scores_the_demo(demo_run):
    out = _eoleads("evaluate", str(demo_run))
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert set(lines) == {"temporary_land", "forest", "black_soil", "river", "grassland", "lake", "wetland", "mine",
                          "other", "all"}
    assert float(lines["all"][-2]) >= 0.85  # recall column


def test_evaluate_without_truth_says_why(tmp_path):
    (tmp_path / "leads.gpkg").write_bytes(b"")
    out = _eoleads("evaluate", str(tmp_path))
    assert out.returncode == 2 and "only runs on the simulated source have a ground truth" in out.stderr
