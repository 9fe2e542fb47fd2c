import glob
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from detectors.bands import REFLECTANCE_BANDS, SCL_BAND
from pipeline.config import DateRange
from pipeline.sources.cache import KEY_TAG, CacheKey, ImageryCache
from pipeline.sources.local import LocalGeoTiffSource
from pipeline.sources.scene import ReadGrid
from tests.conftest import write_s2

GRID = ReadGrid("EPSG:32650", Affine(10, 0, 500000, 0, -10, 5430000), 40, 40)
BANDS = (*REFLECTANCE_BANDS, SCL_BAND)
KEY = CacheKey("stac:https://example.org/v1:sentinel-2-l2a", "S2A_50UQA_20240708_0_L2A", GRID, BANDS, "test-v1")
JULY = DateRange(start=date(2024, 7, 1), end=date(2024, 7, 31))
REPO = Path(__file__).resolve().parents[2]


def _write(value: float = 0.1, grid: ReadGrid = GRID):
    def write(path: Path) -> None:
        refl = np.full((6, grid.height, grid.width), value, dtype=np.float32)
        write_s2(path, refl, "2024-07-08", transform=grid.transform, scl=np.full((grid.height, grid.width), 4))
    return write


def _entries(root: Path) -> list[Path]:
    """Entries as the local source's pattern finds them (glob skips hidden files, as the shell does)."""
    return sorted(Path(p) for p in glob.glob(str(root / "*" / "*.tif")))


def test_put_writes_a_cog_with_the_key_and_get_finds_it(tmp_path):
    cache = ImageryCache(tmp_path / "cache")
    assert cache.get(KEY) is None
    path = cache.put(KEY, _write())
    assert cache.get(KEY) == path
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.descriptions == BANDS
        assert json.loads(src.tags()[KEY_TAG])["scene_id"] == KEY.scene_id
        assert src.tags()["ACQUISITION_DATE"] == "2024-07-08"
    assert _entries(tmp_path / "cache") == [path]
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == [path]  # no temporary file left behind


def test_digest_depends_on_every_field_and_is_stable_across_processes():
    from dataclasses import replace

    other_grid = ReadGrid(GRID.crs, GRID.transform @ Affine.translation(1, 0), 40, 40)
    variants = [replace(KEY, source="stac:other:c"), replace(KEY, scene_id="x"), replace(KEY, grid=other_grid),
                replace(KEY, bands=BANDS[:-1]), replace(KEY, processing="test-v2")]
    assert len({KEY.digest(), *(v.digest() for v in variants)}) == 6
    code = ("from tests.sources.test_cache import KEY; print(KEY.digest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == KEY.digest()


def test_a_writer_that_raises_leaves_no_entry(tmp_path):
    cache = ImageryCache(tmp_path / "cache")

    def broken(path: Path) -> None:
        _write()(path)
        raise ConnectionError("dropped mid-download")

    with pytest.raises(ConnectionError):
        cache.put(KEY, broken)
    assert cache.get(KEY) is None
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # nothing left, hidden or not


def test_a_file_off_the_keys_grid_is_refused(tmp_path):
    cache = ImageryCache(tmp_path / "cache")
    shifted = ReadGrid(GRID.crs, GRID.transform @ Affine.translation(3, 0), 40, 40)
    with pytest.raises(ValueError, match="grid"):
        cache.put(KEY, _write(grid=shifted))
    assert cache.get(KEY) is None and not _entries(tmp_path / "cache")


KILLER = """
import os, signal, sys
import rasterio.shutil
import pipeline.sources.cache as cache_module
from tests.sources.test_cache import KEY, _write

where = sys.argv[2]
def write(path):
    _write()(path)
    if where == "writer":
        os.kill(os.getpid(), signal.SIGKILL)
real_copy = rasterio.shutil.copy
def copy_then_die(src, dst, **kw):
    real_copy(src, dst, **kw)  # the COG is whole under its temporary name, not yet renamed
    os.kill(os.getpid(), signal.SIGKILL)
if where == "rename":
    cache_module.rasterio.shutil.copy = copy_then_die
cache_module.ImageryCache(sys.argv[1]).put(KEY, write)
"""


@pytest.mark.parametrize("where", ["writer", "rename"])
def test_a_process_killed_mid_write_leaves_no_entry(tmp_path, where):
    root = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-c", KILLER, str(root), where], cwd=REPO, capture_output=True)
    assert done.returncode == -9, done.stderr.decode()
    cache = ImageryCache(root)
    assert cache.get(KEY) is None
    assert not _entries(root)  # what the local source's glob would find
    assert cache.get(KEY) is None and cache.put(KEY, _write()) == cache.get(KEY)  # and the next run fills it


def test_a_truncated_entry_is_not_returned(tmp_path):
    cache = ImageryCache(tmp_path / "cache")
    path = cache.put(KEY, _write())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # an interrupted copy onto a USB disk
    assert cache.get(KEY) is None


def test_a_cached_cog_is_read_by_the_local_source(tmp_path):
    cache = ImageryCache(tmp_path / "cache")
    cache.put(KEY, _write(0.1))
    source = LocalGeoTiffSource([str(tmp_path / "cache" / "**" / "*.tif")])
    comp = source.composite(GRID, JULY)
    np.testing.assert_allclose(comp.reflectance, 0.1, atol=1e-4)  # the L2A offset tag travelled with the file
    assert comp.dates == [date(2024, 7, 8)] and comp.valid.all()
