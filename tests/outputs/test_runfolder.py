import json

import pytest

from pipeline.errors import InputError
from pipeline.outputs.runfolder import RunFolder
from tests.test_config import GOOD, _write


def test_folder_without_finished_cells_takes_a_corrected_configuration(tmp_path):
    from pipeline.config import load_config

    first = load_config(_write(tmp_path, GOOD))
    RunFolder(tmp_path / "out", first).open()
    fixed = load_config(_write(tmp_path, GOOD.replace("aoi.geojson", "aoi_fixed.geojson"), "fixed.yaml"))
    folder = RunFolder(tmp_path / "out", fixed)
    folder.open()  # nothing finished yet: a corrected path must not need --fresh
    manifest = json.loads(folder.manifest_path.read_text())
    assert manifest["fingerprint"] == fixed.fingerprint("")

    staging = folder.staging("32650_1_2")
    (staging / "detections.gpkg").write_bytes(b"")
    folder.commit("32650_1_2", staging, {"cell_id": "32650_1_2", "status": "done"})
    assert folder.is_done("32650_1_2")
    with pytest.raises(InputError, match="different configuration"):
        RunFolder(tmp_path / "out", first).open()
    other = RunFolder(tmp_path / "out", first)
    other.wipe()
    other.open()
    assert not other.is_done("32650_1_2")


def test_commit_is_all_or_nothing(tmp_path):
    from pipeline.config import load_config

    folder = RunFolder(tmp_path / "out", load_config(_write(tmp_path, GOOD)))
    folder.open()
    staging = folder.staging("c1")
    (staging / "probabilities.tif").write_bytes(b"x")
    assert not folder.is_done("c1")  # a cell in flight is invisible until committed
    folder.commit("c1", staging, {"cell_id": "c1", "status": "done"})
    assert folder.is_done("c1") and (folder.cell_dir("c1") / "probabilities.tif").exists()
    assert folder.cell_record("c1")["status"] == "done"
    assert not staging.exists()


def test_a_cell_left_in_flight_by_a_dead_run_is_cleared(tmp_path):
    from pipeline.config import load_config

    folder = RunFolder(tmp_path / "out", load_config(_write(tmp_path, GOOD)))
    folder.open()
    dead = folder.cells_dir / ".c1.999999.partial"
    dead.mkdir()
    (dead / "cell.json").write_text("{}")  # written, but the rename never happened
    assert not folder.is_done("c1")
    RunFolder(tmp_path / "out", folder.config).open()  # still no finished cell: nothing refused
    staging = folder.staging("c1")
    assert not dead.exists() and staging.exists()
