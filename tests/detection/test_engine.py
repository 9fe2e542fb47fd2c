"""The streaming engine: the same probabilities and changes as the former whole-scene path, tiles
without data never reaching the model, rows handed on in order, errors reaching the caller."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine

from detectors import DEFAULT_MODEL, load_detector
from detectors.baseline import SpectralBaseline
from detectors.categories import CATEGORY_IDS
from pipeline.detect import detect
from pipeline.detection.engine import (
    STRIP,
    Chunk,
    Engine,
    EngineOptions,
    RowBand,
    array_reader,
    fitting_batch_size,
    strips,
)
from pipeline.detection.probabilities import BLOCK, ProbabilityWriter, probabilities_as_uint8
from pipeline.detection.tiling import Tiling, tile_grid
from pipeline.errors import InputError
from pipeline.inputs.zones import load_zones
from pipeline.sources.pair import PairBands, open_pair
from pipeline.sources.scene import ReadGrid
from tests.conftest import ORIGIN, write_s2
from tests.detection import former

SMALL = Tiling(64, 16, 3)  # many rows of tiles, batches that span rows
VEG = np.array([0.04, 0.07, 0.06, 0.25, 0.20, 0.11])
BARE = np.array([0.2, 0.24, 0.28, 0.32, 0.38, 0.34])
COAL = np.array([0.03, 0.03, 0.03, 0.035, 0.04, 0.04])


def _pair(folder: Path, height: int = 300, width: int = 520, across: int | None = None) -> tuple[Path, Path]:
    """Vegetation turned bare or black in patches of many sizes (some across rows of tiles; one
    across column `across` if given), a strip without data and a cloud (SCL) on the after date."""
    rng = np.random.default_rng(3)
    before = VEG[:, None, None] * rng.uniform(0.9, 1.1, (6, height, width))
    after = before * rng.uniform(0.97, 1.03, (6, height, width))
    for k, (r, c) in enumerate(rng.integers(0, [height - 40, width - 40], (14, 2))):
        h, w = rng.integers(3, 40, 2)
        after[:, r:r + h, c:c + w] = (BARE if k % 3 else COAL)[:, None, None]
    if across is not None:
        after[:, 100:140, across - 25:across + 25] = BARE[:, None, None]
    before[:, :, :70] = 0  # no data: written as DN 0, the files' nodata
    scl = np.full((height, width), 4)
    scl[200:280, 300:420] = 9  # cloud high probability
    folder.mkdir(parents=True, exist_ok=True)
    return (write_s2(folder / "before.tif", before, "2024-07-28"),
            write_s2(folder / "after.tif", after, "2025-08-02", scl=scl))


def _stream(before: Path, after: Path, detector, tiling: Tiling = SMALL, options: EngineOptions | None = None
            ) -> np.ndarray:
    files = open_pair(before, after)
    out = np.zeros((len(detector.categories), files.grid.height, files.grid.width), dtype=np.float32)

    def gather(chunk: Chunk) -> None:
        out[(slice(None), *chunk.window)] = chunk.probs

    with PairBands(files, detector.bands) as pair:
        Engine(detector, tiling, options).run(pair.read, files.grid.height, files.grid.width, gather,
                                              pair.radiometry)
    return out


@pytest.fixture(scope="module")
def learned():
    return load_detector(DEFAULT_MODEL, device="cpu")


@pytest.mark.parametrize("name", ["baseline", "learned"])
def test_the_engine_gives_the_former_probabilities_from_the_files_digital_numbers(tmp_path, learned, name) -> None:
    detector = SpectralBaseline() if name == "baseline" else learned
    before, after = _pair(tmp_path)
    got = _stream(before, after, detector)
    pair = former.read_pair(before, after)
    want = former.predict_arrays(pair.before, pair.after, pair.valid, {}, detector, SMALL)
    assert want.max() > 0.5  # there are changes to agree on
    assert np.abs(got - want).max() <= 1 / 250
    assert ((got > 0).any(axis=0) <= pair.valid).all()


@pytest.mark.parametrize("name", ["baseline", DEFAULT_MODEL])
def test_detect_writes_the_former_probabilities_and_changes(tmp_path, name) -> None:
    before, after = _pair(tmp_path / "pair")
    result = detect(before, after, tmp_path / "out", name, device="cpu", tiling=SMALL)
    zones = load_zones([], list(CATEGORY_IDS))  # the shipped zones, as `detect` loads them
    active = [c for c in CATEGORY_IDS if c not in zones.switched_off]
    probs, polys = former.detect_polygons(before, after, load_detector(name, active, "cpu"), zones, SMALL)
    pair = former.read_pair(before, after)
    with rasterio.open(result.probabilities) as src:
        written, names = src.read(), src.descriptions
        assert src.block_shapes[0] == (256, 256)
    kept = [CATEGORY_IDS.index(n) for n in names]
    assert np.abs(written.astype(int) - probabilities_as_uint8(probs[kept], pair.valid[None])).max() <= 1
    changes = pyogrio.read_dataframe(result.changes, layer="changes")
    assert len(polys) >= 3 and len(changes) == len(polys)
    assert sorted(changes.category) == sorted(polys.category)
    for cat in set(polys.category):
        mine, theirs = changes[changes.category == cat].union_all(), polys[polys.category == cat].union_all()
        assert mine.symmetric_difference(theirs).area <= 0.01 * theirs.area
    assert sorted(changes.n_px) == sorted(polys.n_px)
    assert result.seen_m2 == pytest.approx(pair.valid.sum() * 100)


class _Watching(SpectralBaseline):
    """The baseline, noting every tile's valid mask it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[np.ndarray] = []

    def predict(self, before, after, valid, zones):
        self.seen.extend(valid)
        return super().predict(before, after, valid, zones)


def test_tiles_without_a_valid_pixel_never_reach_the_detector() -> None:
    height, width = 200, 300
    refl = np.broadcast_to(VEG[:, None, None], (6, height, width)).astype(np.float32)
    valid = np.ones((height, width), bool)
    valid[:, :150] = False  # no data, or cloud on either date
    valid[120:, :] = False
    detector = _Watching()
    stats = Engine(detector, SMALL).run(array_reader(refl, refl, valid, {}), height, width, lambda chunk: None)
    tiles = tile_grid(height, width, SMALL.tile_size, SMALL.overlap)
    empty = sum(not valid[t.slices].any() for t in tiles)
    assert stats.tiles == len(tiles) and stats.tiles_without_data == empty > 0
    assert len(detector.seen) == len(tiles) - empty and all(v.any() for v in detector.seen)


@pytest.mark.parametrize(("overlap", "thread"), [(None, "MainThread"), (True, "eoleads-writer")])
def test_rows_reach_the_sink_in_order_in_bands(overlap, thread) -> None:
    """On the CPU (overlap None) the stages take turns in the caller's thread; overlapping, the
    sink runs in the writer thread. Either way the same rows, in order, in bands."""
    height, width = 700, 90
    refl = np.full((6, height, width), 0.1, dtype=np.float32)
    chunks: list[tuple[int, int, str]] = []
    Engine(SpectralBaseline(), SMALL, EngineOptions(overlap_stages=overlap)).run(
        array_reader(refl, refl, np.ones((height, width), bool), {}), height, width,
        lambda c: chunks.append((c.row, c.probs.shape[1], threading.current_thread().name)))
    rows = [r for r, _, _ in chunks]
    assert rows[0] == 0 and all(r + n == nxt for (r, n, _), nxt in zip(chunks, [*rows[1:], height], strict=True))
    assert len(chunks) > 5 and max(n for _, n, _ in chunks) < 2 * SMALL.tile_size  # a rolling band, not the scene
    assert {name for _, _, name in chunks} == {thread}


def test_overlapping_stages_give_the_same_probabilities(tmp_path) -> None:
    before, after = _pair(tmp_path)
    turns, overlapping = (_stream(before, after, SpectralBaseline(), options=EngineOptions(overlap_stages=overlap))
                          for overlap in (False, True))
    assert turns.max() > 0.5 and np.array_equal(turns, overlapping)


def test_strips_of_columns_give_the_probabilities_and_changes_of_one_pass(tmp_path, learned) -> None:
    """A scene wider than a strip runs strip after strip; the tiles on a seam run in both, so every
    pixel is blended from the same tiles as in one pass, and patches cut by a seam are joined."""
    before, after = _pair(tmp_path, across=256)
    assert len(strips(520, tile_grid(300, 520, SMALL.tile_size, SMALL.overlap), 256)) == 3  # the last 8 px wide
    one = _stream(before, after, learned)
    cut = _stream(before, after, learned, options=EngineOptions(strip=256))
    assert one.max() > 0.5 and np.abs(one - cut).max() <= 1e-5
    whole = detect(before, after, tmp_path / "one", DEFAULT_MODEL, device="cpu", tiling=SMALL)
    striped = detect(before, after, tmp_path / "cut", DEFAULT_MODEL, device="cpu", tiling=SMALL, strip=256)
    with rasterio.open(whole.probabilities) as a, rasterio.open(striped.probabilities) as b:
        assert np.abs(a.read().astype(int) - b.read().astype(int)).max() <= 1
    def changes(polygons):
        return sorted(zip(polygons.category, polygons.n_px, strict=True))

    assert len(whole.polygons) > 3 and changes(whole.polygons) == changes(striped.polygons)
    seam = ORIGIN.c + 256 * ORIGIN.a
    bounds = striped.polygons.geometry.bounds
    assert ((bounds.minx < seam) & (bounds.maxx > seam)).any()  # a change across the seam is one polygon


def test_a_strip_that_does_not_start_on_a_block_is_refused(tmp_path) -> None:
    grid = ReadGrid("EPSG:32651", Affine(10, 0, 600000, 0, -10, 5500000), 520, 300)
    with pytest.raises(ValueError, match="column 100"), ProbabilityWriter(tmp_path / "p.tif", grid, ("mine",)) as w:
        w.write(np.zeros((1, 300, 420), np.float32), np.ones((300, 420), bool), col=100)
    assert not (tmp_path / "p.tif").exists()


def test_a_file_with_a_strip_missing_is_not_left_behind(tmp_path) -> None:
    grid = ReadGrid("EPSG:32651", Affine(10, 0, 600000, 0, -10, 5500000), 520, 300)
    with pytest.raises(RuntimeError, match="256 of 520 columns"), \
            ProbabilityWriter(tmp_path / "p.tif", grid, ("mine",)) as w:
        w.write(np.zeros((1, 300, 256), np.float32), np.ones((300, 256), bool), col=0)
    assert not (tmp_path / "p.tif").exists()
    assert STRIP % BLOCK == 0  # strips start on the probability files' blocks


@pytest.mark.parametrize("overlap", [False, True])
def test_a_read_error_reaches_the_caller(overlap) -> None:
    refl = np.full((6, 400, 64), 0.1, dtype=np.float32)
    read = array_reader(refl, refl, np.ones((400, 64), bool), {})

    def failing(row0: int, row1: int, col0: int, col1: int) -> RowBand:
        if row0 > 200:
            raise InputError(Path("after.tif"), None, "its data cannot be read", "fetch it again")
        return read(row0, row1, col0, col1)

    with pytest.raises(InputError, match="cannot be read"):
        Engine(SpectralBaseline(), SMALL, EngineOptions(overlap_stages=overlap)).run(failing, 400, 64,
                                                                                     lambda chunk: None)


@pytest.mark.parametrize("overlap", [False, True])
def test_a_write_error_reaches_the_caller(overlap) -> None:
    refl = np.full((6, 400, 64), 0.1, dtype=np.float32)

    def full_disk(chunk: Chunk) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        Engine(SpectralBaseline(), SMALL, EngineOptions(overlap_stages=overlap)).run(
            array_reader(refl, refl, np.ones((400, 64), bool), {}), 400, 64, full_disk)


def test_a_configured_batch_size_is_used_and_free_memory_sizes_the_batch() -> None:
    assert Engine(SpectralBaseline(), SMALL, EngineOptions(batch_size=5)).batch_size((64, 64), 6) == 5
    assert Engine(SpectralBaseline(), SMALL).batch_size((64, 64), 6) == SMALL.batch_size  # on the CPU
    assert fitting_batch_size(80 * 2**30, 200 * 2**20) == 204
    assert fitting_batch_size(100 * 2**20, 200 * 2**20) == 1  # never none
    assert fitting_batch_size(2**50, 1) == 512


@pytest.mark.slow
def test_detect_on_the_demo_pair_finds_the_former_changes(demo_run: Path, tmp_path: Path) -> None:
    from pipeline.config import ZoneLayer

    imagery = demo_run / "inputs" / "imagery"
    before, after = imagery / "S2_L2A_20240728.tif", imagery / "S2_L2A_20250802.tif"
    layers = [ZoneLayer(path=demo_run / "inputs" / "zones.gpkg", column="zone")]
    result = detect(before, after, tmp_path / "out", DEFAULT_MODEL, layers, device="cpu")
    zones = load_zones(layers, list(CATEGORY_IDS))
    active = [c for c in CATEGORY_IDS if c not in zones.switched_off]
    probs, polys = former.detect_polygons(before, after, load_detector(DEFAULT_MODEL, active, "cpu"), zones)
    with rasterio.open(result.probabilities) as src:
        written, names = src.read(), src.descriptions
    valid = former.read_pair(before, after).valid
    kept = [CATEGORY_IDS.index(n) for n in names]
    assert np.abs(written.astype(int) - probabilities_as_uint8(probs[kept], valid[None])).max() <= 1
    assert len(polys) > 3 and sorted(result.polygons.category) == sorted(polys.category)
    assert sorted(result.polygons.n_px) == sorted(polys.n_px)
