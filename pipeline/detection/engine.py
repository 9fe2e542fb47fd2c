"""The streaming detection engine shared by runs (per cell) and `detect` (whole pairs of any size).

The scene is read in horizontal bands, one per row of tiles. Tiles with no valid pixel (no data,
cloud) never reach the model. Tiles travel to the device as they were read (uint16 digital
numbers stay uint16, through pinned memory on CUDA); radiometry (scale and offset) and, for a
learned detector, the features and their standardisation are computed there. Overlapping tiles
are blended on the device with the weights of `tiling.blend_weights` into a band of rows that
rolls down the scene: rows no later tile can reach are handed, final, to a sink, so memory does
not grow with the scene's height. On a GPU a reader thread keeps bands ahead of the model and a
writer thread takes the final rows, so reading, the model and writing overlap; on the CPU, where
the model already takes every core, the stages take turns (`EngineOptions.overlap_stages`).
"""

from __future__ import annotations

import itertools
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from detectors.categories import Zone
from detectors.interface import Detector
from pipeline.detection.tiling import TILING, Tile, Tiling, blend_weights, tile_grid
from pipeline.memory import release_freed_memory

#: Widest strip of columns one pass holds, a multiple of the probability files' blocks: a wider
#: scene runs strip after strip, so memory is bounded by this width, not the scene's. Each seam
#: runs one column of tiles twice (3 % of the model's work on a scene 8192 px wide).
STRIP = 4096
#: Share of the GPU's free memory a batch of tiles may take (the rest: the rolling band, the
#: allocator's slack, other processes).
GPU_MEMORY_SHARE = 0.5
#: No batch is larger than this, however much memory is free.
MAX_BATCH = 512
#: Batch sizes probed on the GPU, per detector and (tile shape, bands).
_GPU_BATCH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class InferenceStats:
    """Tiles run (a seam's tiles once per strip) and tiles skipped for having no valid pixel, for the run table."""

    tiles: int = 0
    tiles_without_data: int = 0


@dataclass(frozen=True)
class Radiometry:
    """reflectance = (value + offset) / scale, applied on the device; (1, 0) for reflectance."""

    scale: float = 1.0
    offset: float = 0.0


@dataclass
class RowBand:
    """Rows [row, row + height) of the scene across one strip's columns [col, col + width), as read:
    the file's dtype, not reflectance."""

    row: int
    col: int
    before: np.ndarray  # (bands, rows, cols)
    after: np.ndarray
    valid: np.ndarray  # (rows, cols): seen on both dates
    zones: dict[Zone, np.ndarray] = field(default_factory=dict)  # (rows, cols) per supplied zone


@dataclass
class Chunk:
    """Final probabilities of a window of the scene (rows from `row`, columns from `col`), zero where not seen."""

    row: int
    col: int
    probs: np.ndarray  # (categories, rows, cols) float32
    valid: np.ndarray  # (rows, cols)

    @property
    def window(self) -> tuple[slice, slice]:
        """The chunk's rows and columns in the scene."""
        return slice(self.row, self.row + self.valid.shape[0]), slice(self.col, self.col + self.valid.shape[1])


@dataclass(frozen=True)
class EngineOptions:
    """How the engine feeds the detector."""

    batch_size: int | None = None  # None: the tiling's on the CPU, as many as free memory holds on a GPU
    prefetch: int = 2  # bands read ahead of the model, where the stages overlap
    #: Reading, the model and writing in threads of their own. None: on a GPU only. On the CPU,
    #: torch's thread pool already takes every core and each of its operators waits for its slowest
    #: thread, so a reader and a writer beside it slow the model more than they save, and the bands
    #: they pass along are held twice (a 2048² pair on 2 cores: 7.5 s and 1.8 GB taking turns,
    #: 8.1 s and 2.1 GB overlapping).
    overlap_stages: bool | None = None
    strip: int = STRIP  # the widest strip of columns one pass holds (a multiple of the probability files' blocks)


def prepare(detector: Detector, precision: str = "auto", compile: bool = False) -> Detector:
    """The detector set to run at `precision` (auto: on a GPU bf16 where supported, else fp16, on the
    CPU fp32; or bf16, fp16, fp32) and compiled with torch.compile if asked; a detector without a
    network (the baseline) runs as it is."""
    if hasattr(detector, "precision"):
        detector.precision = precision
        if compile:
            detector.compile()
    return detector


def arithmetic(detector: Detector) -> str:
    """What the detector computes in and where, e.g. "bf16 on cuda", for each cell's record: cells of one
    run may have run on different machines (a detector without a network computes in fp32)."""
    return f"{getattr(detector, 'arithmetic', 'fp32')} on {getattr(detector, 'device', 'cpu')}"


def fitting_batch_size(free_bytes: int, tile_bytes: int, share: float = GPU_MEMORY_SHARE) -> int:
    """How many tiles of `tile_bytes` each (their peak working memory) fit in `share` of `free_bytes`."""
    return max(1, min(MAX_BATCH, int(free_bytes * share) // max(1, tile_bytes)))


@dataclass
class _Pending:
    tile: Tile
    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    zones: dict[Zone, np.ndarray]


class _Device:
    """Moves host arrays to the device: through pinned memory and without blocking on CUDA."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch, self.name = torch, device
        self.cuda = device.startswith("cuda")

    def put(self, array: np.ndarray):
        t = self.torch.from_numpy(np.ascontiguousarray(array))
        if not self.cuda:
            return t
        return t.pin_memory().to(self.name, non_blocking=True)


class _Blender:
    """The rolling band of rows in which overlapping tiles are blended, on the device.

    Its buffers are allocated once, as tall as the deepest band a run needs (a row of tiles and
    the rows of tiles a batch reaches below it), and roll in place: rows handed on are dropped by
    moving the few unfinished rows up, so a scene's height never reallocates them and a wide
    scene holds one such band, not a chain of copies.
    """

    def __init__(self, categories: int, scene: tuple[int, int], columns: tuple[int, int], final: tuple[int, int],
                 tiling: Tiling, device: _Device) -> None:
        self.torch, self.device = device.torch, device
        self.height, self.scene_width = scene
        self.col0, self.width = columns[0], columns[1] - columns[0]  # the columns the strip's tiles cover
        self.final = slice(final[0] - self.col0, final[1] - self.col0)  # those of them it hands on
        self.overlap = tiling.overlap
        self.top = 0  # scene row of the band's first row
        self.rows = 0  # rows of the buffers in use
        self.acc = self.torch.zeros((categories, 0, self.width), dtype=self.torch.float32, device=device.name)
        self.weight = self.torch.zeros((0, self.width), dtype=self.torch.float32, device=device.name)
        self.valid = np.zeros((0, self.width), dtype=bool)
        self._weights: dict[tuple[bool, bool, bool, bool], object] = {}

    def _reach(self, row: int) -> None:
        """Make the band hold scene rows up to `row`, growing its buffers only past their height."""
        needed = min(row, self.height) - self.top
        if needed <= self.rows:
            return
        if needed > self.weight.shape[0]:  # to the height needed, not double: it is reached in the first rows
            t, grown = self.torch, needed
            acc = t.zeros((self.acc.shape[0], grown, self.width), dtype=t.float32, device=self.acc.device)
            weight = t.zeros((grown, self.width), dtype=t.float32, device=self.weight.device)
            valid = np.zeros((grown, self.width), dtype=bool)
            acc[:, :self.rows], weight[:self.rows], valid[:self.rows] = (
                self.acc[:, :self.rows], self.weight[:self.rows], self.valid[:self.rows])
            self.acc, self.weight, self.valid = acc, weight, valid
        self.rows = needed

    def add_valid(self, band: RowBand) -> None:
        """Where the band saw the ground on both dates."""
        self._reach(band.row + band.valid.shape[0])
        self.valid[band.row - self.top:band.row - self.top + band.valid.shape[0]] = band.valid

    def _tile_weights(self, tile: Tile):
        """The tile's blending weights, tapering at the scene's interior edges (not the strip's)."""
        key = (tile.row > 0, tile.row + tile.height < self.height, tile.col > 0,
               tile.col + tile.width < self.scene_width)
        if key not in self._weights:
            self._weights[key] = self.device.put(blend_weights(tile, self.height, self.scene_width, self.overlap))
        return self._weights[key]

    def add(self, tiles: list[Tile], probs) -> None:
        """Blend a batch of tile probabilities (N, categories, rows, cols) on the device."""
        for tile, p in zip(tiles, probs, strict=True):
            self._reach(tile.row + tile.height)
            w = self._tile_weights(tile)
            r, c = tile.row - self.top, tile.col - self.col0
            self.acc[:, r:r + tile.height, c:c + tile.width].addcmul_(p, w)
            self.weight[r:r + tile.height, c:c + tile.width] += w

    def flush(self, until: int) -> Chunk | None:
        """The rows from the band's top to `until`, final, and the band rolled past them."""
        n = min(until - self.top, self.rows)
        if n <= 0:
            return None
        # no tile reached a pixel of weight 0, so its sum is 0 too and the division leaves it 0
        probs = (self.acc[:, :n, self.final] / self.weight[:n, self.final].clamp(min=1e-12)).cpu().numpy()
        valid = self.valid[:n, self.final].copy()
        probs *= valid
        rest = self.rows - n
        for start in range(0, rest, n):  # the unfinished rows move up, n at a time: no copy overlaps its source
            stop = min(start + n, rest)
            self.acc[:, start:stop] = self.acc[:, n + start:n + stop]
            self.weight[start:stop] = self.weight[n + start:n + stop]
            self.valid[start:stop] = self.valid[n + start:n + stop]
        self.acc[:, rest:self.rows] = 0
        self.weight[rest:self.rows] = 0
        self.valid[rest:self.rows] = False
        chunk = Chunk(self.top, self.col0 + self.final.start, probs, valid)
        self.top, self.rows = self.top + n, rest
        return chunk


class _Reader(threading.Thread):
    """Reads the bands ahead of the model into a bounded queue; an error travels to the consumer."""

    def __init__(self, read: Callable[[int, int, int, int], RowBand], spans: list[tuple[int, int, int, int]],
                 depth: int) -> None:
        super().__init__(daemon=True, name="eoleads-reader")
        self.read, self.spans = read, spans
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            for span in self.spans:
                if self.stop.is_set():
                    return
                self._put(self.read(*span))
        except BaseException as exc:  # re-raised in the consumer's thread
            self._put(exc)

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def bands(self) -> Iterator[RowBand]:
        self.start()
        try:
            for _ in self.spans:
                item = self.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:  # the files it reads are closed after this: it must have stopped reading
            self.stop.set()
            self.join()


class Engine:
    """Runs a detector over a scene of `height` × `width` pixels read band by band by `read`."""

    def __init__(self, detector: Detector, tiling: Tiling = TILING, options: EngineOptions | None = None) -> None:
        self.detector, self.tiling, self.options = detector, tiling, options or EngineOptions()
        self.device = _Device(getattr(detector, "device", "cpu"))
        self.stats = InferenceStats()

    def batch_size(self, tile_shape: tuple[int, int], bands: int) -> int:
        """The configured batch size; on a GPU, unless configured, as many tiles as free memory holds."""
        if self.options.batch_size:
            return self.options.batch_size
        if not self.device.cuda:
            return self.tiling.batch_size
        known = _GPU_BATCH.setdefault(self.detector, {})
        if (tile_shape, bands) not in known:  # probed once per detector: a run has thousands of cells
            known[tile_shape, bands] = self._probe_batch_size(tile_shape, bands)
        return known[tile_shape, bands]

    def _probe_batch_size(self, tile_shape: tuple[int, int], bands: int) -> int:
        """Runs two tiles, measures their peak memory and fits as many as free memory holds."""
        torch = self.device.torch
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        probe = 2
        dummy = np.zeros((probe, bands, *tile_shape), dtype=np.float32)
        self._predict(dummy, dummy, np.ones((probe, *tile_shape), bool), {}, Radiometry(), Radiometry())
        torch.cuda.synchronize()
        per_tile = (torch.cuda.max_memory_allocated() - base) // probe
        free, _ = torch.cuda.mem_get_info()
        return fitting_batch_size(free, per_tile)

    def _predict(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, zones: dict[Zone, np.ndarray],
                 rad_before: Radiometry, rad_after: Radiometry):
        """Probabilities (N, categories, rows, cols) of a batch, as a tensor on the device."""
        dev = self.device
        # in place: the batch was stacked for this call (on the CPU, float32 shares its memory)
        b = dev.put(before).float().add_(rad_before.offset).div_(rad_before.scale)
        a = dev.put(after).float().add_(rad_after.offset).div_(rad_after.scale)
        v, z = dev.put(valid), {k: dev.put(m) for k, m in zones.items()}
        predict_tensor = getattr(self.detector, "predict_tensor", None)
        if predict_tensor is not None:
            return predict_tensor(b, a, v, z)
        host = self.detector.predict(b.cpu().numpy(), a.cpu().numpy(), valid, zones)  # a numpy detector
        return dev.put(host)

    def run(self, read: Callable[[int, int, int, int], RowBand], height: int, width: int,
            sink: Callable[[Chunk], None], radiometry: tuple[Radiometry, Radiometry] = (Radiometry(), Radiometry())
            ) -> InferenceStats:
        """Probabilities of the whole scene, handed to `sink` strip by strip (see `strips`), in row order
        within each; `read(row0, row1, col0, col1)` gives a window of both images."""
        tiles = tile_grid(height, width, self.tiling.tile_size, self.tiling.overlap)
        th, tw = tiles[0].height, tiles[0].width
        rows = sorted({t.row for t in tiles})
        parts = strips(width, tiles, self.options.strip)
        self.stats = InferenceStats(tiles=sum(len(reach) for _, reach in parts))
        overlap = self.device.cuda if self.options.overlap_stages is None else self.options.overlap_stages
        writer = _Writer(sink) if overlap else _InlineWriter(sink)
        spans = [(r, r + th, *_covered(reach)) for _, reach in parts for r in rows]
        bands = _Reader(read, spans, self.options.prefetch).bands() if overlap else (read(*s) for s in spans)
        batch_size: int | None = None
        try:
            for final, reach in parts:
                blender = _Blender(len(self.detector.categories), (height, width), _covered(reach), final,
                                   self.tiling, self.device)
                by_row = {r: [t for t in reach if t.row == r] for r in rows}
                pending: list[_Pending] = []

                def run_batch(batch: list[_Pending], blender: _Blender = blender) -> None:
                    probs = self._predict(np.stack([p.before for p in batch]), np.stack([p.after for p in batch]),
                                          np.stack([p.valid for p in batch]),
                                          {z: np.stack([p.zones[z] for p in batch]) for z in batch[0].zones},
                                          *radiometry)
                    blender.add([p.tile for p in batch], probs)

                for i, band in enumerate(itertools.islice(bands, len(rows))):
                    blender.add_valid(band)
                    for t in by_row[band.row]:
                        cols = slice(t.col - band.col, t.col - band.col + tw)
                        valid = band.valid[:, cols]
                        if not valid.any():
                            self.stats.tiles_without_data += 1
                            continue
                        pending.append(_Pending(t, band.before[:, :, cols], band.after[:, :, cols], valid,
                                                {z: m[:, cols] for z, m in band.zones.items()}))
                    if batch_size is None and pending:
                        batch_size = self.batch_size((th, tw), band.before.shape[0])
                    while batch_size and len(pending) >= batch_size:
                        run_batch(pending[:batch_size])
                        del pending[:batch_size]
                    frontier = pending[0].tile.row if pending else (rows[i + 1] if i + 1 < len(rows) else height)
                    writer.put(blender.flush(frontier))
                    release_freed_memory()  # the band's temporaries, beyond what the next band reuses (pipeline.memory)
                if pending:
                    run_batch(pending)
                writer.put(blender.flush(height))
        except BaseException:
            writer.abandon()
            raise
        writer.finish()
        return self.stats


def strips(width: int, tiles: list[Tile], strip: int = STRIP) -> list[tuple[tuple[int, int], list[Tile]]]:
    """The scene's columns cut into strips of `strip` (the last one narrower): for each, the columns it
    hands on and the tiles that reach them (those on a seam belong to both strips)."""
    edges = [*range(0, width, strip), width]
    return [((x0, x1), [t for t in tiles if t.col < x1 and t.col + t.width > x0])
            for x0, x1 in itertools.pairwise(edges)]


def _covered(tiles: list[Tile]) -> tuple[int, int]:
    """The columns a strip's tiles cover."""
    return min(t.col for t in tiles), max(t.col + t.width for t in tiles)


class _Writer(threading.Thread):
    """Hands final chunks to the sink in its own thread, so the model does not wait on writing."""

    def __init__(self, sink: Callable[[Chunk], None]) -> None:
        super().__init__(daemon=True, name="eoleads-writer")
        self.sink = sink
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.abandoned = False
        self.start()

    def run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            if self.error is None and not self.abandoned:
                try:
                    self.sink(chunk)
                except BaseException as exc:  # re-raised in the engine's thread
                    self.error = exc

    def put(self, chunk: Chunk | None) -> None:
        if self.error is not None:
            raise self.error
        if chunk is not None:
            self.queue.put(chunk)

    def abandon(self) -> None:
        """Stop after the chunk in hand (the file it writes is closed after this)."""
        self.abandoned = True  # the chunks still queued are dropped
        self.queue.put(None)
        self.join()

    def finish(self) -> None:
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error


class _InlineWriter:
    """Hands final chunks to the sink in the engine's own thread (stages that do not overlap)."""

    def __init__(self, sink: Callable[[Chunk], None]) -> None:
        self.sink = sink

    def put(self, chunk: Chunk | None) -> None:
        if chunk is not None:
            self.sink(chunk)

    def abandon(self) -> None:
        """Nothing is in flight."""

    def finish(self) -> None:
        """Nothing is in flight."""


def array_reader(before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                 zones: dict[Zone, np.ndarray]) -> Callable[[int, int, int, int], RowBand]:
    """Bands of a scene already in memory (a run's cell)."""
    def read(row0: int, row1: int, col0: int, col1: int) -> RowBand:
        win = slice(row0, row1), slice(col0, col1)
        return RowBand(row0, col0, before[(slice(None), *win)], after[(slice(None), *win)], valid[win],
                       {z: m[win] for z, m in zones.items()})
    return read
