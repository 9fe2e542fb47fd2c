import json
from pathlib import Path

import numpy as np
import yaml

from pipeline.cli import main
from pipeline.paths import AOI_DIR
from tests.conftest import write_s2
from tests.sources.stac_server import StacApi, split_into_band_cogs

HULUNBUIR = [[115.5, 47.0], [126.1, 47.0], [126.1, 53.4], [115.5, 53.4], [115.5, 47.0]]
WINDOWS = {"baseline": {"start": "2024-07-01", "end": "2024-08-31"},
           "monitoring": {"start": "2025-07-01", "end": "2025-08-31"}}


def _config(folder: Path, source: dict, ring: list = HULUNBUIR) -> Path:
    aoi = folder / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump({"name": "plan", "aoi": ["aoi.geojson"], "windows": WINDOWS, "source": source,
                                    "output": "run"}))
    return path


def _scenes(folder: Path, dates: tuple[str, ...]) -> list[Path]:
    """Small L2A files near Hailar (117.6°E, 49.0°N, UTM 50N)."""
    from affine import Affine

    transform = Affine(10, 0, 470000, 0, -10, 5430000)
    return [write_s2(folder / f"S2_{d}.tif", np.full((6, 32, 32), 0.1, np.float32), d, transform=transform,
                     scl=np.full((32, 32), 4)) for d in dates]


def _figures(text: str) -> dict[str, int]:
    """The printed figures, by name."""
    figures = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(":")
        if key in ("cells", "scenes", "requests", "bytes"):
            figures[key] = int(value.split()[0].replace(",", ""))
    return figures


def test_plan_of_a_hulunbuir_sized_aoi_through_a_stac_api_downloads_nothing(tmp_path, capsys):
    files = _scenes(tmp_path, ("2024-07-10", "2025-07-12", "2025-10-01"))
    items = split_into_band_cogs(files, tmp_path / "assets")
    with StacApi(items, tmp_path / "assets") as api:
        code = main(["plan", str(_config(tmp_path, {"type": "stac", "url": api.url}))])
        assert api.asset_requests == 0 and api.search_requests >= 2
    out = capsys.readouterr().out
    assert code == 0, out
    figures = _figures(out)
    assert figures["cells"] > 20000  # ~800 by 700 km in 5.12 km cells, over UTM zones 50 to 52
    assert figures["scenes"] == 2  # the October scene lies outside both windows
    assert figures["requests"] == 2 * 7 * 1 and figures["bytes"] == 2 * 512 * 512 * 7 * 2  # one cell each
    assert "cells have no scene in the baseline or the monitoring window" in out
    assert not (tmp_path / "run").exists()  # nothing written, nothing cached


def test_plan_of_a_local_source_counts_the_files_in_the_windows(tmp_path, capsys):
    _scenes(tmp_path, ("2024-07-10", "2025-07-12", "2025-10-01"))
    ring = [[117.5, 48.9], [117.7, 48.9], [117.7, 49.1], [117.5, 49.1], [117.5, 48.9]]
    assert main(["plan", str(_config(tmp_path, {"type": "local", "paths": ["S2_*.tif"]}, ring))]) == 0
    out = capsys.readouterr().out
    figures = _figures(out)
    assert figures["scenes"] == 2 and figures["requests"] == 0 and figures["bytes"] == 0
    assert "3 file(s) matched, 2 in the windows" in out


def test_plan_of_the_simulated_source_simulates_nothing(tmp_path, capsys):
    ring = [[117.5, 48.9], [117.6, 48.9], [117.6, 49.0], [117.5, 49.0], [117.5, 48.9]]
    config = _config(tmp_path, {"type": "simulated", "folder": "inputs"}, ring)
    assert main(["plan", str(config)]) == 0
    out = capsys.readouterr().out
    assert _figures(out)["scenes"] == 6 and "on the first run" in out
    assert not (tmp_path / "inputs").exists()


def test_plan_against_a_catalog_that_is_down_exits_2_with_the_fix(tmp_path, capsys):
    files = _scenes(tmp_path, ("2024-07-10",))
    with StacApi(split_into_band_cogs(files, tmp_path / "assets"), tmp_path / "assets") as api:
        url = api.url
    assert main(["plan", str(_config(tmp_path, {"type": "stac", "url": url}))]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the STAC catalog" in err and "type: local" in err


def test_plan_refuses_an_absurd_grid_before_making_cells(tmp_path, capsys):
    """`plan` checks the same size limits as `run`: 10⁻⁶ m pixels would take forever to lay out."""
    config = tmp_path / "absurd.yaml"
    config.write_text(
        "name: absurd\naoi: [" + str(AOI_DIR / "demo_hulun_shore.geojson") + "]\n"
        "windows: {baseline: {start: 2021-06-01, end: 2021-08-31}, monitoring: {start: 2023-06-01, end: 2023-08-31}}\n"
        "source: {type: simulated, folder: sim}\noutput: out\ngrid: {resolution_m: 0.000001}\n", encoding="utf-8")
    assert main(["plan", str(config)]) == 2
    err = capsys.readouterr().err
    assert "limits.max_cells" in err and "Traceback" not in err
