import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import InputError
from pipeline.outputs.runfolder import DamagedCell, RunFolder
from tests.test_config import GOOD, _write


def _config(tmp_path: Path, text: str = GOOD, name: str = "run.yaml"):
    return load_config(_write(tmp_path, text, name))


def _commit(folder: RunFolder, cell_id: str, detections: bytes = b"") -> None:
    staging = folder.staging(cell_id)
    (staging / "detections.gpkg").write_bytes(detections)
    folder.commit(cell_id, staging, {"cell_id": cell_id, "status": "done"})


def test_folder_without_finished_cells_takes_a_corrected_configuration(tmp_path):
    first = _config(tmp_path)
    with RunFolder(tmp_path / "out", first).open():
        pass
    fixed = _config(tmp_path, GOOD.replace("aoi.geojson", "aoi_fixed.geojson"), "fixed.yaml")
    with RunFolder(tmp_path / "out", fixed).open() as folder:  # nothing finished: a corrected path needs no --fresh
        manifest = json.loads(folder.manifest_path.read_text())
        assert manifest["fingerprint"] == fixed.fingerprint("")
        _commit(folder, "32650_1_2")
        assert folder.is_done("32650_1_2")
    with pytest.raises(InputError, match="different configuration"):
        RunFolder(tmp_path / "out", first).open()
    with RunFolder(tmp_path / "out", first).open(fresh=True) as other:
        assert not other.is_done("32650_1_2")


def test_cells_carry_their_fingerprint_so_a_lost_manifest_reuses_nothing(tmp_path):
    first = _config(tmp_path)
    with RunFolder(tmp_path / "out", first).open() as folder:
        _commit(folder, "c1")
        assert json.loads((folder.cell_dir("c1") / "cell.json").read_text())["fingerprint"] == folder.fingerprint
    folder.manifest_path.unlink()  # the user tidies up, or a copy missed it
    changed = _config(tmp_path, GOOD.replace("2025-08-31", "2025-09-30"), "changed.yaml")
    with pytest.raises(InputError) as err:
        RunFolder(tmp_path / "out", changed).open()
    assert err.value.path == folder.cell_dir("c1") / "cell.json"
    assert "different configuration" in str(err.value) and "--fresh" in err.value.fix
    assert "new `output` folder" in err.value.fix
    with RunFolder(tmp_path / "out", first).open() as same:  # the same configuration resumes, manifest restored
        assert same.is_done("c1")
        assert json.loads(same.manifest_path.read_text())["fingerprint"] == same.fingerprint


def test_commit_is_all_or_nothing(tmp_path):
    with RunFolder(tmp_path / "out", _config(tmp_path)).open() as folder:
        staging = folder.staging("c1")
        (staging / "probabilities.tif").write_bytes(b"x")
        assert not folder.is_done("c1")  # a cell in flight is invisible until committed
        folder.commit("c1", staging, {"cell_id": "c1", "status": "done"})
        assert folder.is_done("c1") and (folder.cell_dir("c1") / "probabilities.tif").exists()
        assert folder.cell_record("c1")["status"] == "done"
        assert not staging.exists()


def test_a_cell_left_in_flight_by_a_dead_run_is_cleared(tmp_path):
    config = _config(tmp_path)
    with RunFolder(tmp_path / "out", config).open() as folder:
        dead = folder.cells_dir / ".c1.999999.partial"
    dead.mkdir()
    (dead / "cell.json").write_text("{}")  # written, but the rename never happened
    with RunFolder(tmp_path / "out", config).open(shard=(1, 2)) as folder:  # other shards may be writing: kept
        assert dead.exists() and not folder.is_done("c1")
        staging = folder.staging("c1")  # this shard's own cell: its leftover goes
        assert not dead.exists() and staging.exists()


def test_partials_of_killed_runs_go_and_nothing_else(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "out"
    with RunFolder(out, config).open() as folder:
        folder.claim(["evidence/L1.png", "leads.gpkg"])
    (out / "evidence").mkdir()
    ours = [out / ".leads.4242.partial.gpkg", out / "evidence" / ".L1.4242.partial.png",
            out / ".summary.4242.partial.json"]
    users = [out / "my.partial.gpkg", out / ".hidden", out / "evidence" / ".notes.txt", out / "notes.partial"]
    for path in ours + users:
        path.write_bytes(b"x")
    ours.append(out / "cells" / ".c9.4242.partial")  # a cell in flight
    ours[-1].mkdir()
    with RunFolder(out, config).open(shard=(1, 2)):  # a shard job shares the folder: it sweeps nothing
        assert all(p.exists() for p in ours)
    with RunFolder(out, config).open():
        assert not any(p.exists() for p in ours)
        assert all(p.exists() for p in users)


def test_fresh_removes_only_what_eoleads_wrote(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "out"
    with RunFolder(out, config).open() as folder:
        _commit(folder, "c1")
        (out / "evidence").mkdir()
        folder.claim(["leads.gpkg", "evidence/L1.png"])
        for rel in ("leads.gpkg", "evidence/L1.png"):
            (out / rel).write_bytes(b"eoleads")
    users = [out / "notes.txt", out / "evidence" / "site-visit.jpg", out / "cells" / "README.txt"]
    for path in users:
        path.write_text("mine")
    with RunFolder(out, config).open(fresh=True) as fresh:
        assert not fresh.is_done("c1") and not (out / "leads.gpkg").exists()
        assert not (out / "evidence" / "L1.png").exists()
        assert all(p.read_text() == "mine" for p in users)


def test_a_merge_removes_what_earlier_merges_wrote_and_it_no_longer_does(tmp_path):
    out = tmp_path / "out"
    with RunFolder(out, _config(tmp_path)).open() as folder:
        (out / "evidence").mkdir()
        folder.claim(["evidence/L1.png", "evidence/L2.png"])
        for name in ("L1.png", "L2.png", "mine.png"):
            (out / "evidence" / name).write_bytes(b"x")
        folder.finish_merge([out / "evidence" / "L2.png"])
        assert not (out / "evidence" / "L1.png").exists()
        assert (out / "evidence" / "L2.png").exists() and (out / "evidence" / "mine.png").exists()
        (out / "evidence" / "mine.png").unlink()
        folder.finish_merge([])  # evidence switched off: the folder eoleads made goes once empty
        assert not (out / "evidence").exists()


def test_shards_merge_once(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "out"
    first, second = RunFolder(out, config).open(shard=(1, 2)), RunFolder(out, config).open(shard=(2, 2))
    for folder in (first, second):
        folder.expect(["c1", "c2"])
    _commit(first, "c1")
    _commit(second, "c2")
    assert first.start_merge(again=False)
    assert not second.start_merge(again=False)  # finished together: the other one merges
    first.finish_merge([])
    first.close()
    second.close()
    with RunFolder(out, config).open(shard=(2, 2)) as late:
        late.expect(["c1", "c2"])
        assert not late.start_merge(again=False)  # these very cells were merged already
        _commit(late, "c2")  # done again (say, after it was damaged): a new merge is due
        assert late.start_merge(again=False)
    with RunFolder(out, config).open() as whole:
        whole.expect(["c1", "c2"])
        assert whole.start_merge(again=True)  # a run without --shard always merges


def test_damaged_cells_are_set_aside_with_a_note(tmp_path):
    with RunFolder(tmp_path / "out", _config(tmp_path)).open() as folder:
        _commit(folder, "c1")
        (folder.cell_dir("c1") / "cell.json").write_text('{"cell_id": "c1", "sta')  # cut short
        _commit(folder, "c2", detections=b"SQLite format 3\x00 and then nothing")
        assert not folder.resume("c1") and not folder.cell_dir("c1").exists()
        aside = list((folder.cells_dir / "damaged").glob("c1-*"))
        assert len(aside) == 1 and (aside[0] / "cell.json").exists()  # kept for a look
        assert "cell c1 was damaged" in folder.notes[0] and "done again" in folder.notes[0]
        assert folder.resume("c2")  # its record is fine: the damage shows when its detections are read
        with pytest.raises(DamagedCell) as err:
            folder.detections("c2")
        assert err.value.path == folder.cell_dir("c2") / "detections.gpkg"


def test_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(InputError, match="is a file, not a folder") as err:
        RunFolder(tmp_path / "out" / "run", _config(tmp_path)).open()
    assert err.value.path == tmp_path / "out"


_HOLD = """
import sys
from pathlib import Path
from pipeline.config import load_config
from pipeline.outputs.runfolder import RunFolder
shard = tuple(int(x) for x in sys.argv[3].split("/")) if len(sys.argv) > 3 else None
with RunFolder(Path(sys.argv[2]), load_config(Path(sys.argv[1]))).open(shard=shard):
    print("holding", flush=True)
    sys.stdin.read()
"""


class FolderHolder:
    """Another process holding the folder (a run, or one shard) until the test lets go."""

    def __init__(self, config: Path, out: Path, shard: str | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(config), str(out), *([shard] if shard else [])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "holding"

    def __enter__(self) -> subprocess.Popen:
        return self.proc

    def __exit__(self, *exc: object) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0


def test_a_second_job_is_refused_with_who_holds_the_folder(tmp_path):
    config_path = _write(tmp_path, GOOD)
    config, out = load_config(config_path), tmp_path / "out"
    with FolderHolder(config_path, out) as holder:
        with pytest.raises(InputError) as err:
            RunFolder(out, config).open()
        assert f"another eoleads run is working in this folder (pid {holder.pid} on " in str(err.value)
        assert "wait for it to finish" in err.value.fix
        with pytest.raises(InputError, match="another eoleads run"):
            RunFolder(out, config).open(shard=(1, 2))
    with RunFolder(out, config).open():  # let go: free again
        pass


@pytest.mark.parametrize(("shard", "allowed"), [((2, 2), True), ((1, 2), False), ((1, 3), False), (None, False)])
def test_shard_jobs_share_the_folder_with_their_own_split_only(tmp_path, shard, allowed):
    config_path = _write(tmp_path, GOOD)
    config, out = load_config(config_path), tmp_path / "out"
    with FolderHolder(config_path, out, "1/2") as holder:
        if allowed:
            with RunFolder(out, config).open(shard=shard):
                pass
        else:
            with pytest.raises(InputError, match=f"shard job 1/2 is working in this folder \\(pid {holder.pid} "):
                RunFolder(out, config).open(shard=shard)


_CHECK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("checking", flush=True)
time.sleep(0.3)
lock.release()
"""


def test_a_shard_starting_while_another_checks_the_folder_is_not_refused(tmp_path):
    """Another shard job's check holds the whole-run lock for an instant: that is not a run at work."""
    config = _config(tmp_path)
    out = tmp_path / "out"
    with RunFolder(out, config).open():  # the lock files exist, as when a first shard has started
        pass
    check = subprocess.Popen([sys.executable, "-c", _CHECK, str(out / ".eoleads" / "run.lock")],
                             stdout=subprocess.PIPE, text=True)
    assert check.stdout.readline().strip() == "checking"
    with RunFolder(out, config).open(shard=(2, 2)):
        pass
    assert check.wait(timeout=60) == 0
