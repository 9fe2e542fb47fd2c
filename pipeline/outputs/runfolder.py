"""The run folder: a manifest, one sub-folder per finished cell, and the merged outputs.

A cell's folder appears in one rename once everything in it is written, so a killed run loses
at most the cells in flight, and running the same command again skips the finished ones.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.atomic import write_json_atomic
from pipeline.config import RunConfig
from pipeline.errors import InputError

_PACKAGES = ("eoleads", "numpy", "rasterio", "geopandas", "shapely", "pyogrio", "pyproj", "scipy", "pydantic",
             "earthlib", "torch", "segmentation-models-pytorch", "sentinelhub")


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


class RunFolder:
    """Where one run's cells and outputs live."""

    def __init__(self, root: Path, config: RunConfig, config_path: Path | None = None,
                 weights_sha256: str = "") -> None:
        self.root = Path(root)
        self.config = config
        self.fingerprint = config.fingerprint(weights_sha256)
        self.config_path = config_path
        self.cells_dir = self.root / "cells"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def open(self) -> None:
        """Create the folder, or check that an existing one was made by the same configuration."""
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        fingerprint = self.fingerprint
        if self.manifest_path.exists():
            old = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            finished = any(not p.parent.name.startswith(".") for p in self.cells_dir.glob("*/cell.json"))
            if old.get("fingerprint") != fingerprint and finished:
                raise InputError(self.manifest_path, "fingerprint",
                                 "this run folder was made with a different configuration",
                                 "choose a new `output` folder, or run again with --fresh to start this one over")
            if finished:
                return
        write_json_atomic(self.manifest_path, {
            "fingerprint": fingerprint, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config_file": str(self.config_path) if self.config_path else None,
            "config": self.config.model_dump(mode="json"), "versions": versions(),
        })

    def wipe(self) -> None:
        """Remove everything a previous run left here (used by --fresh)."""
        for path in (self.cells_dir, self.manifest_path):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def cell_dir(self, cell_id: str) -> Path:
        """Where a finished cell's files are."""
        return self.cells_dir / cell_id

    def is_done(self, cell_id: str) -> bool:
        """A cell is finished once its folder holds `cell.json`, which `commit` writes last."""
        return (self.cell_dir(cell_id) / "cell.json").exists()

    def staging(self, cell_id: str) -> Path:
        """An empty scratch folder for a cell; `commit` moves it into place."""
        for leftover in self.cells_dir.glob(f".{cell_id}.*.partial"):  # this cell, in flight when a run died
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = self.cells_dir / f".{cell_id}.{os.getpid()}.partial"
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, cell_id: str, staging: Path, record: dict[str, Any]) -> None:
        """Finish a cell: its record goes in last, then one rename makes the whole folder appear."""
        write_json_atomic(staging / "cell.json", record)
        final = self.cell_dir(cell_id)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)

    def cell_record(self, cell_id: str) -> dict[str, Any]:
        """The record a finished cell was committed with (status, counts, dates)."""
        return json.loads((self.cell_dir(cell_id) / "cell.json").read_text(encoding="utf-8"))
