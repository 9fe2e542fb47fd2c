"""The imagery cache: every acquisition fetched for a cell is kept as a COG, read again instead of fetched.

A cached file is an ordinary Sentinel-2-like GeoTIFF (band descriptions, ACQUISITION_DATE and the
radiometry tags the local source reads), so a cache filled on a connected network can be carried to
an offline one and read there with `source: {type: local, paths: [<cache>/*/*.tif]}`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import rasterio
import rasterio.shutil
from rasterio.crs import CRS
from rasterio.windows import Window

from pipeline.atomic import atomic_path
from pipeline.sources.scene import ReadGrid

#: The tag holding the key as JSON, so a cached file says what it is without its name.
KEY_TAG = "EOLEADS_CACHE_KEY"


@dataclass(frozen=True)
class CacheKey:
    """Everything the pixels of a cached acquisition depend on."""

    source: str  # e.g. "sentinelhub:cdse:sentinel-2-l2a" or "stac:<catalog url or path>:<collection>"
    scene_id: str  # the acquisition's id (one cached file per acquisition x grid)
    grid: ReadGrid  # the cell grid it was read onto
    bands: tuple[str, ...]  # band names in file order (detector bands, then SCL)
    processing: str  # anything else that changes the pixels (e.g. "harmonised-v1")

    def to_json(self) -> str:
        """The key as canonical JSON (sorted keys, the grid as CRS, transform and size)."""
        g = self.grid
        grid = {"crs": CRS.from_user_input(g.crs).to_string(), "transform": list(g.transform)[:6],
                "width": g.width, "height": g.height}
        return json.dumps({"source": self.source, "scene_id": self.scene_id, "grid": grid,
                           "bands": list(self.bands), "processing": self.processing}, sort_keys=True)

    def digest(self) -> str:
        """A stable sha256 hex of all of the above."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


class ImageryCache:
    """A folder of cached acquisitions, one COG per key, entries whole or absent."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: CacheKey) -> Path:
        """Where the entry of `key` lives: one folder level, so `<cache>/*/*.tif` finds every entry."""
        digest = key.digest()
        return self.root / digest[:2] / f"{digest}.tif"

    def get(self, key: CacheKey) -> Path | None:
        """The COG if present and whole, else None."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with rasterio.open(path) as src:
                if src.tags().get(KEY_TAG) != key.to_json():
                    return None
                # the last block lies at the end of the file: a truncated copy fails here
                src.read(window=Window(src.width - 1, src.height - 1, 1, 1))
        except rasterio.errors.RasterioError:
            return None
        return path

    def put(self, key: CacheKey, write: Callable[[Path], None]) -> Path:
        """Let `write(tmp)` write a GeoTIFF, check it, and move it into the cache as a COG.

        A writer that raises, a file that does not match the key, or a process killed at any point
        leaves no entry: the COG is written under a hidden partial name and renamed into place. What a
        killed process leaves is hidden (`.incoming/`, `.<name>.partial.tif`) and may be deleted.
        """
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        incoming = self.root / ".incoming"  # hidden: globs such as <cache>/*/*.tif never see a half-written file
        incoming.mkdir(exist_ok=True)
        raw = incoming / f"{final.stem}.{os.getpid()}.tif"
        raw.unlink(missing_ok=True)
        try:
            write(raw)
            _check(raw, key)
            with rasterio.open(raw, "r+") as dst:  # tags and band names first: the COG driver copies them
                dst.update_tags(**{KEY_TAG: key.to_json(), "SCENE_ID": key.scene_id})
                for i, band in enumerate(key.bands, start=1):
                    dst.set_band_description(i, band)
            with atomic_path(final) as tmp:
                rasterio.shutil.copy(raw, tmp, driver="COG", compress="DEFLATE", predictor="YES",
                                     overviews="NONE", blocksize=256)
        finally:
            raw.unlink(missing_ok=True)
            raw.with_name(raw.name + ".aux.xml").unlink(missing_ok=True)
        return final


def _check(path: Path, key: CacheKey) -> None:
    """The written file must lie on the key's grid, hold its bands and say when it was acquired."""
    g = key.grid
    with rasterio.open(path) as src:
        problems = []
        if src.crs is None or src.crs != CRS.from_user_input(g.crs):
            problems.append(f"CRS {src.crs} is not {g.crs}")
        if (src.width, src.height) != (g.width, g.height) or not src.transform.almost_equals(g.transform):
            problems.append(f"grid {src.width}x{src.height} {tuple(src.transform)[:6]} is not the key's")
        if src.count != len(key.bands):
            problems.append(f"{src.count} band(s), the key names {len(key.bands)}")
        when = src.tags().get("ACQUISITION_DATE", "")
        try:
            date.fromisoformat(when[:10])
        except ValueError:
            problems.append(f"ACQUISITION_DATE {when!r} is not YYYY-MM-DD")
    if problems:
        raise ValueError(f"imagery for cache entry {key.scene_id} not cached: {'; '.join(problems)}")
