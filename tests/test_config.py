from pathlib import Path

import pytest

from detectors.categories import CATEGORY_IDS
from pipeline.config import load_config
from pipeline.errors import ConfigError

GOOD = """
name: t
aoi: [aoi.geojson]
windows:
  baseline: {start: 2024-07-01, end: 2024-08-31}
  monitoring: {start: 2025-07-01, end: 2025-08-31}
source: {type: local, paths: ["imagery/*.tif"]}
output: out
"""


def _write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_config_resolves_paths_relative_to_the_file(tmp_path):
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.aoi == [tmp_path / "aoi.geojson"]
    assert cfg.output == tmp_path / "out"
    assert cfg.source.paths == [str(tmp_path / "imagery/*.tif")]
    assert cfg.categories == list(CATEGORY_IDS)  # the eight and other


def test_toml_config_is_read(tmp_path):
    text = """
name = "t"
aoi = ["aoi.geojson"]
output = "out"
[windows.baseline]
start = 2024-07-01
end = 2024-08-31
[windows.monitoring]
start = 2025-07-01
end = 2025-08-31
[source]
type = "simulated"
seed = 3
"""
    cfg = load_config(_write(tmp_path, text, "run.toml"))
    assert cfg.source.seed == 3


@pytest.mark.parametrize(("change", "field", "allowed"), [
    (("categories: [mine, forests]", None), "categories.1", "'temporary_land', 'forest'"),
    (('source: {type: local, paths: ["imagery/*.tif"]}', "source: {type: sentinel}"), "source", "'local', 'simulated'"),
    (("radiometry", None), "source.radiometry", "'auto', 'L2A' or 'L1C'"),
    (("output: out", "output: out\ndevice: gpu"), "device", "'auto', 'cpu' or 'cuda'"),
])
def test_bad_values_name_the_field_and_the_allowed_values(tmp_path, change, field, allowed):
    old, new = change
    if old == "radiometry":
        text = GOOD.replace('paths: ["imagery/*.tif"]', 'paths: ["imagery/*.tif"], radiometry: L3')
    else:
        text = GOOD + old + "\n" if new is None else GOOD.replace(old, new)
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    msg = str(err.value)
    assert str(tmp_path / "run.yaml") in msg
    assert f"field '{field}'" in msg
    assert allowed in msg


def test_windows_must_be_in_order(tmp_path):
    text = GOOD.replace("baseline: {start: 2024-07-01, end: 2024-08-31}",
                        "baseline: {start: 2025-07-01, end: 2025-09-30}")
    with pytest.raises(ConfigError, match="baseline window must end before the monitoring window"):
        load_config(_write(tmp_path, text))


def test_unknown_field_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="field 'outptu'"):
        load_config(_write(tmp_path, GOOD + "outptu: x\n"))


def test_missing_file_and_bad_syntax(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "name: [unclosed\n"))


def test_fingerprint_ignores_device_but_not_windows(tmp_path):
    base = load_config(_write(tmp_path, GOOD))
    other_device = load_config(_write(tmp_path, GOOD + "device: cpu\n", "b.yaml"))
    other_window = load_config(_write(tmp_path, GOOD.replace("2025-08-31", "2025-08-30"), "c.yaml"))
    assert base.fingerprint("") == other_device.fingerprint("")
    assert base.fingerprint("") != other_window.fingerprint("")


def test_fingerprint_survives_moving_the_folder(tmp_path):
    a = load_config(_write(tmp_path, GOOD))
    (tmp_path / "moved").mkdir()
    b = load_config(_write(tmp_path / "moved", GOOD))
    assert a.aoi != b.aoi
    assert a.fingerprint("") == b.fingerprint("")


def test_permits_and_name_do_not_enter_the_fingerprint(tmp_path):
    base = load_config(_write(tmp_path, GOOD))
    more = GOOD.replace("name: t", "name: renamed") + "permits: [{path: permits.gpkg}]\noutput_crs: EPSG:4326\n"
    assert load_config(_write(tmp_path, more, "b.yaml")).fingerprint("") == base.fingerprint("")


def test_config_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "gbk.yaml"
    path.write_bytes(GOOD.replace("name: t", "name: 呼伦湖").encode("gbk"))
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


def test_retrained_weights_under_the_same_card_path_change_the_fingerprint(tmp_path):
    import json
    import shutil

    from detectors import DEFAULT_MODEL, weights_hash
    from detectors.learned import WEIGHTS_DIR

    shutil.copy(WEIGHTS_DIR / f"{DEFAULT_MODEL}.json", tmp_path / "model.json")
    text = GOOD + "detection: {detector: model.json}\n"
    def fingerprint(name: str) -> str:
        config = load_config(_write(tmp_path, text, name))
        return config.fingerprint(weights_hash(config.detection.detector))

    first = fingerprint("a.yaml")
    assert fingerprint("b.yaml") == first
    card = json.loads((tmp_path / "model.json").read_text(encoding="utf-8"))
    card["weights_sha256"] = "0" * 64
    (tmp_path / "model.json").write_text(json.dumps(card), encoding="utf-8")
    assert fingerprint("c.yaml") != first


_ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("deep.yaml", "name: " + "[" * 10_000 + "]" * 10_000, "nested more than 32 levels deep"),
    ("deep-mapping.yaml", "name: " + "{a: " * 10_000 + "1" + "}" * 10_000, "nested more than 32 levels deep"),
    ("bomb.yaml", _ALIAS_BOMB, "more than 100,000 values once its aliases"),
    ("cycle.yaml", "name: &n [1, *n]\n", "alias *n inside the value it names"),
    ("deep.toml", "name = " + "[" * 10_000 + "]" * 10_000, "TOML is nested too deeply"),
    ("deep-table.toml", "name = " + "{a = " * 10_000 + "1" + "}" * 10_000, "TOML is nested too deeply"),
])
def test_nesting_and_alias_bombs_are_refused_without_a_traceback(tmp_path, capsys, name, text, problem):
    from pipeline.cli import main

    path = _write(tmp_path, text, name)
    with pytest.raises(ConfigError, match="remove the extra brackets or aliases") as err:
        load_config(path)
    assert problem in str(err.value) and str(path) in str(err.value)
    assert main(["run", str(path)]) == 2
    stderr = capsys.readouterr().err
    assert problem in stderr and "Traceback" not in stderr


def test_ordinary_anchors_and_aliases_still_load(tmp_path):
    summer = "{start: 2024-07-01, end: 2024-08-31}"
    text = GOOD.replace(f"baseline: {summer}", f"baseline: &summer {summer}").replace(
        "monitoring: {start: 2025-07-01, end: 2025-08-31}", "monitoring: *summer")
    with pytest.raises(ConfigError, match="baseline window must end before"):  # parsed, then validated
        load_config(_write(tmp_path, text))


def test_a_file_far_larger_than_a_configuration_is_not_read(tmp_path):
    path = _write(tmp_path, GOOD + "# padding\n" * 200_000)
    with pytest.raises(ConfigError, match=r"too large for a run configuration.*\n  fix: give the configuration file"):
        load_config(path)


def test_limits_default_and_must_be_positive(tmp_path):
    assert load_config(_write(tmp_path, GOOD)).limits.max_pixels >= 2_530_000_000  # Hulunbuir at 10 m
    with pytest.raises(ConfigError, match=r"field 'limits\.max_cells'"):
        load_config(_write(tmp_path, GOOD + "limits: {max_cells: 0}\n", "b.yaml"))
    raised = load_config(_write(tmp_path, GOOD + "limits: {max_cells: 1_000_000, max_pixels: 50_000_000_000}\n",
                                "c.yaml"))
    assert (raised.limits.max_cells, raised.limits.max_pixels) == (1_000_000, 50_000_000_000)


def _run_config(tmp_path: Path, extra: str) -> Path:
    """A run over a 10 km square near Hailar with the weightless detector, plus `extra` lines."""
    import geopandas as gpd
    from shapely.geometry import box

    gpd.GeoDataFrame(geometry=[box(119.70, 49.20, 119.84, 49.29)], crs="EPSG:4326").to_file(
        tmp_path / "aoi.geojson", driver="GeoJSON")
    return _write(tmp_path, GOOD + "detection: {detector: baseline}\n" + extra)


@pytest.mark.parametrize(("extra", "field", "figure"), [
    ("grid: {resolution_m: 0.000001}\n", "limits.max_cells", "more cells than the limit of 100,000"),
    ("limits: {max_pixels: 1000000}\n", "limits.max_pixels", "more pixels per date than the limit of 1,000,000"),
])
def test_a_run_over_its_limits_is_refused_before_any_cell_is_made(tmp_path, capsys, extra, field, figure):
    from pipeline.cli import main

    path = _run_config(tmp_path, extra)
    assert main(["run", "--quiet", str(path)]) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert str(path) in stderr and f"field '{field}'" in stderr and figure in stderr
    assert "grid.resolution_m" in stderr and f"limits: {{{field.split('.')[1]}: " in stderr
    assert not any((tmp_path / "out" / "cells").glob("*/cell.json"))
