"""The run folder: a manifest, one sub-folder per finished cell, and the merged outputs.

A cell's folder appears in one rename once everything in it is written, so a killed run loses
at most the cells in flight, and running the same command again skips the finished ones. Each
cell carries the fingerprint of the configuration that made it, so no cell of another
configuration is ever reused, with or without the manifest. eoleads removes only what it wrote
itself: the cells, and the merged outputs listed in the manifest; a user's own files in the
folder (even in `evidence/`) are never touched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import geopandas as gpd

from pipeline.atomic import storage_errors, write_json_atomic
from pipeline.config import RunConfig
from pipeline.errors import InputError
from pipeline.outputs.locks import MERGE, WHOLE, FolderLocks

log = logging.getLogger(__name__)

_PACKAGES = ("eoleads", "numpy", "rasterio", "geopandas", "shapely", "pyogrio", "pyproj", "scipy", "pydantic",
             "earthlib", "torch", "segmentation-models-pytorch", "sentinelhub")
PARTIAL = re.compile(r"^\..+\.\d+\.partial(\.\w+)?$")  # what `atomic_path` and `staging` write, with the writer's pid
_FRESH_FIX = "run again with --fresh to start this folder over, or set a new `output` folder"


def versions() -> dict[str, str]:
    """Versions of Python, GDAL and the packages whose behaviour shapes the results."""
    import rasterio

    out = {"python": platform.python_version(), "gdal": rasterio.__gdal_version__}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file; None when the file is missing or damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class DamagedCell(InputError):
    """A finished cell whose files cannot be read: it is set aside and done again."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C, with where the run stopped and how to go on."""


class RunFolder:
    """Where one run's cells and outputs live; `open` it (as a context manager) before use."""

    def __init__(self, root: Path, config: RunConfig, config_path: Path | None = None,
                 weights_sha256: str = "") -> None:
        self.root = Path(root)
        self.config = config
        self.fingerprint = config.fingerprint(weights_sha256)
        self.config_path = config_path
        self.cells_dir = self.root / "cells"
        self.state_dir = self.root / ".eoleads"  # locks and who holds them, the last merge
        self.notes: list[str] = []  # what the run should report about the folder (cells set aside)
        self.cell_ids: list[str] = []
        self._locks = FolderLocks(self.state_dir, self.root)

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def _merged_path(self) -> Path:
        return self.state_dir / "last-merge.json"

    def open(self, fresh: bool = False, shard: tuple[int, int] | None = None) -> RunFolder:
        """Lock the folder for this job, check its finished cells and clear what dead runs left.

        A run without a shard (or with --fresh) has the folder to itself: only then are partial
        files of killed runs removed, as no other job can be writing them.
        """
        self._prepare()
        try:
            if shard is None or fresh:
                self._locks.take_whole()
                if fresh:
                    self._wipe()
                self._sweep(self.cells_dir, self.state_dir, *self._output_dirs())
            if shard is not None:
                self._locks.take_shard(*shard)
                if fresh:
                    self._locks.drop(WHOLE)
            self._check_cells()
            self._write_manifest()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Free the folder for other jobs."""
        self._locks.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prepare(self) -> None:
        existing = next(p for p in (self.root, *self.root.parents) if p.exists())
        if not existing.is_dir():
            raise InputError(existing, "output", "is a file, not a folder",
                             "set `output` to a folder (eoleads creates it if needed), or move the file away")
        with storage_errors(self.root):
            self.cells_dir.mkdir(parents=True, exist_ok=True)
            self.state_dir.mkdir(exist_ok=True)

    def _check_cells(self) -> None:
        """Refuse finished cells of another configuration before any work starts."""
        for path in sorted(self.cells_dir.glob("*/cell.json")):
            if not path.parent.name.startswith("."):  # not a cell in flight
                self.is_done(path.parent.name)

    def _write_manifest(self) -> None:
        old = _read_json(self.manifest_path) or {}
        if old.get("fingerprint") == self.fingerprint:
            return
        write_json_atomic(self.manifest_path, {
            "fingerprint": self.fingerprint, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config_file": str(self.config_path) if self.config_path else None,
            "config": self.config.model_dump(mode="json"), "versions": versions(),
            "outputs": old.get("outputs", []),
        })

    def _wipe(self) -> None:
        """Remove what earlier runs of eoleads wrote here (--fresh), and nothing else."""
        self._remove_outputs(self._outputs())
        for path in self.cells_dir.iterdir():
            if path.is_dir() and (path.name == "damaged" or PARTIAL.match(path.name) or (path / "cell.json").exists()):
                shutil.rmtree(path)
        for path in (self.manifest_path, self._merged_path):
            path.unlink(missing_ok=True)

    def _sweep(self, *folders: Path) -> None:
        """Remove partial files and folders that killed runs of eoleads left (their names say so)."""
        for folder in folders:
            for path in folder.glob(".*.partial*") if folder.is_dir() else []:
                if not PARTIAL.match(path.name):
                    continue
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    def cell_dir(self, cell_id: str) -> Path:
        """Where a finished cell's files are."""
        return self.cells_dir / cell_id

    def is_done(self, cell_id: str) -> bool:
        """A cell is finished once its folder holds a readable `cell.json` (`commit` writes it last).

        A finished cell of another configuration is an error, never a cell to reuse.
        """
        path = self.cell_dir(cell_id) / "cell.json"
        record = _read_json(path) if path.exists() else None
        if record is not None and record.get("fingerprint") != self.fingerprint:
            raise InputError(path, "fingerprint", "this finished cell was made with a different configuration "
                             "(or by an earlier eoleads), so it cannot be reused", _FRESH_FIX)
        return record is not None

    def resume(self, cell_id: str) -> bool:
        """Whether a cell is finished; a damaged one (its folder there, its record unreadable) is
        set aside, to be done again."""
        if self.is_done(cell_id):
            return True
        if self.cell_dir(cell_id).exists():
            self.set_aside(cell_id, "its cell.json is missing or cannot be read")
        return False

    def set_aside(self, cell_id: str, why: str) -> None:
        """Move a damaged cell's folder out of the way (kept for a look), with a note for the report."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.cells_dir / "damaged" / f"{cell_id}-{stamp}"
        with storage_errors(target):
            target.parent.mkdir(exist_ok=True)
            os.replace(self.cell_dir(cell_id), target)
        note = (f"cell {cell_id} was damaged ({why}): moved to {target.relative_to(self.root)} and done again "
                "(if cells keep getting damaged, check the disk, or start over with --fresh)")
        log.warning(note)
        self.notes.append(note)

    def staging(self, cell_id: str) -> Path:
        """An empty scratch folder for a cell; `commit` moves it into place."""
        for leftover in self.cells_dir.glob(f".{cell_id}.*.partial"):  # this cell, in flight when a run died
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = self.cells_dir / f".{cell_id}.{os.getpid()}.partial"
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, cell_id: str, staging: Path, record: dict[str, Any]) -> None:
        """Finish a cell: its record (with this run's fingerprint) goes in last, then one rename
        makes the whole folder appear."""
        write_json_atomic(staging / "cell.json", {**record, "fingerprint": self.fingerprint,
                                                  "commit": uuid.uuid4().hex})
        final = self.cell_dir(cell_id)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)

    def cell_record(self, cell_id: str) -> dict[str, Any]:
        """The record a finished cell was committed with (status, counts, dates)."""
        return json.loads((self.cell_dir(cell_id) / "cell.json").read_text(encoding="utf-8"))

    def detections(self, cell_id: str) -> gpd.GeoDataFrame:
        """A finished cell's detected changes; `DamagedCell` when its file cannot be read."""
        path = self.cell_dir(cell_id) / "detections.gpkg"
        try:
            return gpd.read_file(path, engine="pyogrio")
        except Exception as exc:  # whatever GDAL makes of a damaged file
            raise DamagedCell(path, None, f"cannot be read ({exc.__class__.__name__}: {exc})",
                              "eoleads sets the cell aside and does it again; if this repeats, run with --fresh") \
                from exc

    def expect(self, cell_ids: Iterable[str]) -> None:
        """The cells of this run, for `progress` and for telling merges apart."""
        self.cell_ids = list(cell_ids)

    def progress(self) -> str:
        """How far the run got, in words, for a run stopped midway."""
        if not self.cell_ids:
            return "stopped before any cell was processed"
        done = sum((self.cell_dir(c) / "cell.json").exists() for c in self.cell_ids)
        return f"stopped with {done} of {len(self.cell_ids)} cells finished"

    def start_merge(self, again: bool) -> bool:
        """Whether this job writes the merged outputs now.

        False while another job writes them, and (unless `again`) when a job already merged
        these very cells: two shards that finish together merge once.
        """
        if not self._locks.take_merge():
            return False
        if not again and _read_json(self._merged_path) == {"cells": self._cells_digest()}:
            self._locks.drop(MERGE)
            return False
        self._sweep(*self._output_dirs())  # only merges write here: partials are a dead merge's
        return True

    def claim(self, paths: Iterable[Path | str]) -> None:
        """List files (relative to the folder) as eoleads' before writing them, so that later runs
        and --fresh remove them, and nothing else."""
        manifest = _read_json(self.manifest_path) or {}
        outputs = {*manifest.get("outputs", []), *(self._relative(p) for p in paths)}
        write_json_atomic(self.manifest_path, {**manifest, "outputs": sorted(outputs)})

    def finish_merge(self, written: Iterable[Path | str]) -> None:
        """Record the merge; the outputs of earlier merges that this one did not write (evidence of
        leads that are gone, an old overview map) are removed."""
        keep = {self._relative(p) for p in written}
        self._remove_outputs(set(self._outputs()) - keep)
        manifest = _read_json(self.manifest_path) or {}
        write_json_atomic(self.manifest_path, {**manifest, "outputs": sorted(keep)})
        write_json_atomic(self._merged_path, {"cells": self._cells_digest()})

    def _outputs(self) -> list[str]:
        return (_read_json(self.manifest_path) or {}).get("outputs", [])

    def _output_dirs(self) -> set[Path]:
        return {self.root, *((self.root / rel).parent for rel in self._outputs())}

    def _remove_outputs(self, outputs: Iterable[str]) -> None:
        folders = set()
        for rel in outputs:
            if Path(rel).is_absolute() or ".." in Path(rel).parts:  # never outside the folder
                continue
            path = self.root / rel
            path.unlink(missing_ok=True)
            folders.add(path.parent)
        for folder in folders - {self.root}:  # evidence/: kept while a user's files are in it
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def _relative(self, path: Path | str) -> str:
        path = Path(path)
        return (path.relative_to(self.root) if path.is_absolute() else path).as_posix()

    def _cells_digest(self) -> str:
        commits = [f"{c}:{(_read_json(self.cell_dir(c) / 'cell.json') or {}).get('commit')}" for c in self.cell_ids]
        return hashlib.sha256("\n".join(commits).encode()).hexdigest()
