"""`make bench`: `detect` at three scene sizes, the model alone and a TorchGeo-style loop, side by side.

One run measures everything it compares, so every ratio it quotes comes from figures taken on
the same machine at the same time:
- `pipeline.detect.detect` on synthetic Sentinel-2-like pairs of 2048², 4096² and 8192² px, each
  size in its own process, so the peak resident memory is that size's (and a size that outgrows
  `--rss-cap-mb` is stopped and recorded as such instead of taking the machine down); time per
  stage (read, features and model, write, vectorise) and end to end, medians of `--repeats`;
- the same detector's forward pass alone on the same number of tiles, without I/O, timed in the
  same process right after each `detect` run, so each ratio is between figures taken together;
- a TorchGeo-style loop (torchgeo_loop.py) with the same model on the smallest pair;
- a region-sized run's cells per second, where pipeline/evaluation/region.py provides it.
The demo run's stage table (run.py, per cell) follows in its own section. Each section between
its markers in the output file is replaced; the rest of the file is kept.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from detectors import DEFAULT_MODEL
from detectors.bands import REFLECTANCE_BANDS
from detectors.learned import cpu_runs_natively
from pipeline.evaluation.report import machine, software, write_section
from pipeline.profiling import RssByStage, StageTimer, max_rss_mb, rss_mb

BEGIN, END = "<!-- bench:demo:begin -->", "<!-- bench:demo:end -->"
SCALE_BEGIN, SCALE_END = "<!-- bench:scale:begin -->", "<!-- bench:scale:end -->"

SIZES = (2048, 4096, 8192)
QUICK_SIZES = (512, 640, 768)
#: A child whose resident memory passes this is stopped: the figure is then "more than" the cap.
RSS_CAP_MB = 8192
#: The model alone is timed on at most this many tiles after each run, its time scaled to the scene's tiles.
MODEL_TILES = 400
#: Ground area of one 10 m pixel.
PIXEL_KM2 = 1e-4
#: Where `detect` spends each stage: the functions and methods ("module:attribute") timed around it.
DETECT_STAGES: dict[str, tuple[str, ...]] = {
    "read": ("pipeline.sources.pair:PairBands.read",),
    "features and model": ("pipeline.detection.engine:Engine._predict",),
    "blend": ("pipeline.detection.engine:_Blender.add", "pipeline.detection.engine:_Blender.flush"),
    "write": ("pipeline.detection.probabilities:ProbabilityWriter.write",),
    "vectorise": ("pipeline.detect:decide", "pipeline.detect:polygons_from_labels",
                  "pipeline.detect:merge_across_cells"),
}
#: The part of Hulunbuir the region-sized run covers in `make bench` (its southernmost 1/N).
REGION_FRACTION = 640
#: UTM zone 51N, in which Hulunbuir lies.
PAIR_CRS = "EPSG:32651"
_LAND = ("crop", "grass_green", "dry_grass", "steppe_soil", "forest", "water")
_CHANGE = ("subsoil", "fill", "built", "gravel_yard", "rock_pit")
_FIELD_PX, _STRIP_PX = 64, 512


# ---- synthetic pairs ----------------------------------------------------------------------------

def write_synthetic_pair(folder: Path, size: int, seed: int = 0) -> tuple[Path, Path]:
    """A before/after pair of `size`² px as L2A uint16 GeoTIFFs (tiled 512², deflate), written strip by strip.

    Fields of 640 m take measured spectra, vary a little between the dates and carry sensor
    noise; rectangles of 80-480 m turn to soil, fill or buildings on the after date (about one
    per 25 ha), so the model finds changes to decide and vectorise.
    """
    import rasterio
    from affine import Affine

    from pipeline.simulator.spectra import draw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = np.stack([draw(_LAND[i % len(_LAND)], rng) for i in range(48)])
    season = rng.normal(1.0, 0.03, palette.shape).astype(np.float32)
    fields = rng.integers(len(palette), size=(math.ceil(size / _FIELD_PX),) * 2)
    n_changes = max(4, size * size // 250_000)
    corners = rng.integers(0, size - 48, size=(n_changes, 2))
    sides = rng.integers(8, 48, size=(n_changes, 2))
    spectra = np.stack([draw(_CHANGE[i % len(_CHANGE)], rng) for i in range(n_changes)])
    profile = dict(driver="GTiff", width=size, height=size, count=len(REFLECTANCE_BANDS), dtype="uint16",
                   crs=PAIR_CRS, transform=Affine(10, 0, 600000, 0, -10, 5500000), nodata=0, tiled=True,
                   blockxsize=512, blockysize=512, compress="deflate", predictor=2)
    paths = []
    for day, (name, when) in enumerate((("before", "2023-07-20"), ("after", "2024-07-18"))):
        path = folder / f"{name}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            for top in range(0, size, _STRIP_PX):
                rows = min(_STRIP_PX, size - top)
                labels = np.repeat(np.repeat(fields[top // _FIELD_PX:math.ceil((top + rows) / _FIELD_PX)],
                                             _FIELD_PX, axis=0)[:rows], _FIELD_PX, axis=1)[:, :size]
                refl = (palette * season if day else palette)[labels].transpose(2, 0, 1)
                if day:
                    for (r, c), (h, w), spectrum in zip(corners, sides, spectra, strict=True):
                        r0, r1 = max(r, top), min(r + h, top + rows)
                        if r0 < r1:
                            refl[:, r0 - top:r1 - top, c:c + w] = spectrum[:, None, None]
                noise = np.random.default_rng([seed, day, top]).standard_normal(refl.shape, dtype=np.float32)
                dn = np.clip(np.round((refl + 0.004 * noise) * 10000 + 1000), 1, 65535).astype("uint16")
                dst.write(dn, window=((top, top + rows), (0, size)))
            dst.descriptions = REFLECTANCE_BANDS
            dst.update_tags(ACQUISITION_DATE=when, PROCESSING_LEVEL="L2A", BOA_ADD_OFFSET="-1000")
        paths.append(path)
    return paths[0], paths[1]


# ---- what runs in each child process ------------------------------------------------------------

def _timed(timer: StageTimer, stage: str, func: Callable) -> Callable:
    def timed(*args, **kwargs):
        with timer(stage):
            return func(*args, **kwargs)
    return timed


@contextmanager
def _detect_stages(timer: StageTimer) -> Iterator[None]:
    """Time the functions of DETECT_STAGES that this version has, for as long as the block runs."""
    import importlib

    saved = []
    for stage, places in DETECT_STAGES.items():
        for place in places:
            module, _, path = place.partition(":")
            owner = importlib.import_module(module)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent, None)
            if owner is not None and hasattr(owner, name):
                saved.append((owner, name, getattr(owner, name)))
                setattr(owner, name, _timed(timer, stage, getattr(owner, name)))
    try:
        yield
    finally:
        for owner, name, func in reversed(saved):
            setattr(owner, name, func)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process or any process it waited for (DataLoader workers)."""
    return max(max_rss_mb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def child_detect(before: Path, after: Path, out: Path, tiles: int, repeats: int, precision: str = "auto") -> dict:
    """`detect` `repeats` times on one pair, each run followed by the same detector alone on tiles
    held in memory (forward pass; features and forward; up to MODEL_TILES, scaled to the scene's
    `tiles`), so that every ratio of end to end against the model alone is between figures taken
    one after the other; both at `precision`."""
    from detectors import load_detector
    from pipeline.detect import detect
    from pipeline.detection.engine import prepare
    from pipeline.detection.tiling import TILING

    detector = prepare(load_detector(DEFAULT_MODEL, None, "cpu"), precision)
    tile_before, tile_after, valid = pair_tiles(before, after, detector, TILING.batch_size)
    stack = detector.inputs(tile_before, tile_after, valid, {})
    calls = math.ceil(min(tiles, MODEL_TILES) / len(stack))
    scale = tiles / (calls * len(stack))  # seconds for exactly the scene's tiles
    detector.probabilities(stack)  # warm-up

    def seconds_of(step: Callable[[], object]) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            step()
        return (time.perf_counter() - start) * scale

    seconds, stages, forward, predict = [], [], [], []
    rss_by_stage: dict[str, float] = {}
    for i in range(repeats):
        timer = StageTimer()
        start = time.perf_counter()
        with _detect_stages(timer), RssByStage(timer) as rss:
            detect(before, after, out / f"run{i}", DEFAULT_MODEL, device="cpu", precision=precision)
        seconds.append(time.perf_counter() - start)
        stages.append(dict(timer.seconds))
        for stage, mb in rss.peak_mb.items():
            rss_by_stage[stage] = max(rss_by_stage.get(stage, 0.0), mb)
        forward.append(seconds_of(lambda: detector.probabilities(stack)))
        predict.append(seconds_of(lambda: detector.predict(tile_before, tile_after, valid, {})))
    return {"seconds": seconds, "stages": stages, "model_seconds": forward, "features_model_seconds": predict,
            "rss_mb": _peak_rss_mb(), "rss_by_stage": rss_by_stage}


def pair_tiles(before: Path, after: Path, detector, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` tiles (before, after reflectance, valid) of the tiling's size from the pair's first rows
    of tiles, side by side, held in memory, for timing the model without I/O (only those rows are read)."""
    from pipeline.detection.tiling import TILING
    from pipeline.sources.pair import PairBands, open_pair

    files = open_pair(before, after)
    side = TILING.tile_size
    per_row = files.grid.width // side
    count = min(count, per_row * (files.grid.height // side))
    with PairBands(files, detector.bands) as pair:
        band = pair.read(0, math.ceil(count / per_row) * side, 0, per_row * side)
    dates = [(dn.astype(np.float32) + r.offset) / r.scale for dn, r in zip((band.before, band.after),
                                                                           pair.radiometry, strict=True)]
    picks = [(slice((k // per_row) * side, (k // per_row + 1) * side),
              slice((k % per_row) * side, (k % per_row + 1) * side)) for k in range(count)]
    return (np.stack([dates[0][(slice(None), *w)] for w in picks]),
            np.stack([dates[1][(slice(None), *w)] for w in picks]), np.stack([band.valid[w] for w in picks]))


def child_torchgeo(before: Path, after: Path, repeats: int, reference: Path | None) -> dict:
    """The TorchGeo-style loop `repeats` times; its agreement with `detect`'s probabilities at `reference`."""
    import rasterio

    from detectors.categories import CATEGORY_IDS
    from pipeline.detection.probabilities import probabilities_as_uint8
    from pipeline.evaluation.torchgeo_loop import torchgeo_loop

    seconds = []
    for _ in range(repeats):  # the model is loaded in each run, as `detect` loads it
        start = time.perf_counter()
        result = torchgeo_loop(before, after, DEFAULT_MODEL)
        seconds.append(time.perf_counter() - start)
    figures: dict = {"seconds": seconds, "rss_mb": _peak_rss_mb()}
    if reference is not None and reference.exists():
        with rasterio.open(reference) as src:
            theirs = src.read().astype(np.int16)
            names = src.descriptions
        ours = probabilities_as_uint8(result.probabilities[[CATEGORY_IDS.index(n) for n in names]],
                                      result.valid[None]).astype(np.int16)
        seen = (theirs != 255) & (ours != 255)
        diff = np.abs(theirs - ours)[seen]
        figures["within_one_step"] = float((diff <= 1).mean()) if diff.size else 0.0
        figures["max_steps"] = int(diff.max()) if diff.size else 0
    return figures


CHILDREN = {"detect": child_detect, "torchgeo": child_torchgeo}


# ---- the parent: children side by side ----------------------------------------------------------

def run_child(kind: str, rss_cap_mb: float, **kwargs) -> dict:
    """One measurement in a fresh process; {"stopped_at_mb": cap} if it outgrew the cap."""
    args = json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()})
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.evaluation.bench", "--child", kind, args],
                            stdout=subprocess.PIPE, text=True)
    while proc.poll() is None:
        if rss_mb(proc.pid) > rss_cap_mb:
            proc.kill()
            proc.wait()
            return {"stopped_at_mb": rss_cap_mb}
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {kind} {args} failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def _child_main(kind: str, args: str) -> None:
    kwargs = json.loads(args)
    paths = {k: Path(v) for k, v in kwargs.items() if k in ("before", "after", "out", "reference") and v}
    print(json.dumps(CHILDREN[kind](**{**kwargs, **paths})))


def scene_tiles(size: int) -> int:
    """Tiles the default tiling cuts a `size`² scene into."""
    from pipeline.detection.tiling import TILING, tile_grid

    return len(tile_grid(size, size, TILING.tile_size, TILING.overlap))


def _rate(pixels: float, seconds: float | None) -> str:
    return f"{pixels / seconds / 1e6:.2f}" if seconds else "—"


def _km2(pixels: float, seconds: float | None) -> str:
    return f"{pixels * PIXEL_KM2 / seconds:.1f}" if seconds else "—"


def bench_scale(sizes: tuple[int, ...] = SIZES, repeats: int = 3, rss_cap_mb: float = RSS_CAP_MB,
                workdir: Path | None = None, region: bool = True) -> str:
    """Measure everything side by side and return the markdown section."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        pairs, written = {}, time.perf_counter()
        for size in sizes:
            pairs[size] = write_synthetic_pair(Path(tmp) / f"pair{size}", size, seed=size)
        written = time.perf_counter() - written
        detect_runs = {size: run_child("detect", rss_cap_mb, before=pairs[size][0], after=pairs[size][1],
                                       out=Path(tmp) / f"out{size}", tiles=scene_tiles(size), repeats=repeats)
                       for size in sizes}
        smallest = min(sizes)
        reduced = (run_child("detect", rss_cap_mb, before=pairs[smallest][0], after=pairs[smallest][1],
                             out=Path(tmp) / f"bf16-{smallest}", tiles=scene_tiles(smallest), repeats=repeats,
                             precision="bf16") if cpu_runs_natively("bf16") else None)
        loop = run_child("torchgeo", rss_cap_mb, before=pairs[smallest][0], after=pairs[smallest][1],
                         repeats=repeats, reference=Path(tmp) / f"out{smallest}" / "run0" / "probabilities.tif")
        region_text = region_lines(Path(tmp) / "region") if region else None
    lines = [SCALE_BEGIN, "## `detect` at three scene sizes against the model alone and a TorchGeo-style loop, CPU",
             "", f"Machine: {machine()}; {software()}. Date: {datetime.now(UTC):%Y-%m-%d}. "
             "Synthetic L2A-like pairs (uint16, six bands, tiled 512², deflate; fields of measured spectra and "
             f"about one change per 25 ha), written in {written:.0f} s before the runs. Each size runs in its "
             f"own process; figures are medians of {repeats} runs, every ratio is between figures of this one "
             "run. A stage's rate divides the scene's pixels by the time spent in that stage (on the CPU the "
             "engine's stages take turns in one thread; scenes wider than 4096 px run in strips of columns, "
             "whose seams run one column of tiles twice).", ""]
    lines += _scale_table(detect_runs, rss_cap_mb)
    lines += ["", *_model_table(detect_runs), "", *_precision_lines(detect_runs[smallest], reduced, smallest),
              "", *_loop_lines(detect_runs[smallest], loop, smallest)]
    if region_text:
        lines += ["", region_text]
    lines.append(SCALE_END)
    return "\n".join(lines)


def _median_seconds(run: dict) -> float | None:
    return statistics.median(run["seconds"]) if "seconds" in run else None


def _scale_table(runs: dict[int, dict], rss_cap_mb: float) -> list[str]:
    stages = list(DETECT_STAGES)
    lines = ["| scene | Mpx | end to end s | Mpx/s | km²/s | " + " | ".join(f"{s} Mpx/s" for s in stages)
             + " | peak RSS MiB |", "|---|---:|---:|---:|---:|" + "---:|" * len(stages) + "---:|"]
    peaks = []
    for size, run in runs.items():
        px = size * size
        total = _median_seconds(run)
        per_stage = []
        for s in stages:
            times = [r[s] for r in run.get("stages", []) if s in r]
            per_stage.append(_rate(px, statistics.median(times)) if times else "—")
        if "stopped_at_mb" in run:
            rss = f"> {rss_cap_mb:.0f} (stopped)"
        else:
            rss = f"{run['rss_mb']:.0f}"
            peaks.append(run["rss_mb"])
        lines.append(f"| {size}² | {px / 1e6:.1f} | {f'{total:.1f}' if total else '—'} | {_rate(px, total)} | "
                     f"{_km2(px, total)} | " + " | ".join(per_stage) + f" | {rss} |")
    if len(peaks) < len(runs):
        lines += ["", f"Peak memory is not flat: at least one size outgrew {rss_cap_mb:.0f} MiB and was stopped."]
    elif peaks:
        growth = max(peaks) / min(peaks) - 1
        verdict = "flat (within 20 %)" if growth <= 0.2 else "not flat (more than 20 %)"
        lines += ["", f"Peak resident memory from {min(peaks):.0f} to {max(peaks):.0f} MiB across the sizes, "
                      f"+{100 * growth:.0f} %: {verdict}."]
    return lines + _rss_stage_table(runs)


def _rss_stage_table(runs: dict[int, dict]) -> list[str]:
    """Where the peak memory is reached: the largest resident memory sampled during each stage."""
    measured = {size: run["rss_by_stage"] for size, run in runs.items() if run.get("rss_by_stage")}
    if not measured:
        return []
    stages = [*DETECT_STAGES, "other"]
    lines = ["", "Resident memory sampled every 5 ms during each stage, MiB (the largest of the runs; "
                 "\"other\": the rest of `detect`, from loading the model and the engine's own loop to writing "
                 "the GeoPackage):", "",
             "| scene | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]
    for size, peaks in measured.items():
        lines.append(f"| {size}² | " + " | ".join(f"{peaks[s]:.0f}" if s in peaks else "—" for s in stages) + " |")
    return lines


def _model_table(runs: dict[int, dict]) -> list[str]:
    """End to end against the model alone on each size's tiles, timed right after each run."""
    from pipeline.detection.tiling import TILING

    lines = [f"### End to end against the model alone ({TILING.tile_size}² tiles, overlap {TILING.overlap}, "
             f"batch {TILING.batch_size}; the forward pass on tiles held in memory, as many as the scene has, "
             "timed in the same process right after each `detect` run)", "",
             "| scene | tiles | model alone Mpx/s | features + model Mpx/s | end to end Mpx/s | "
             "end to end / model alone (median of the runs' ratios) |", "|---|---:|---:|---:|---:|---:|"]
    for size, run in runs.items():
        px, tiles = size * size, scene_tiles(size)
        if "seconds" not in run:
            lines.append(f"| {size}² | {tiles} | — | — | — | — |")
            continue
        alone, with_features = (statistics.median(run[k]) for k in ("model_seconds", "features_model_seconds"))
        ratio = statistics.median(m / e for m, e in zip(run["model_seconds"], run["seconds"], strict=True))
        lines.append(f"| {size}² | {tiles} | {_rate(px, alone)} | {_rate(px, with_features)} | "
                     f"{_rate(px, _median_seconds(run))} | {100 * ratio:.0f} % |")
    return lines


def _precision_lines(fp32: dict, bf16: dict | None, size: int) -> list[str]:
    """`detect` and the model alone at bf16 beside fp32 on one size, where the CPU runs bf16 natively."""
    lines = ["### At bf16 on the CPU (`--precision bf16`)", ""]
    if bf16 is None:
        return [*lines, "This CPU has no native bf16 arithmetic (AVX-512 or AMX): not measured."]
    px = size * size
    lines += [f"The same {size}² pair and tiles, each precision in its own process (the model alone timed "
              "right after each run, as above); how far bf16's answers are from fp32's on real pairs: "
              "[models.md](models.md#reduced-precision).", "",
              "| precision | end to end s | end to end Mpx/s | model alone Mpx/s | end to end / model alone |",
              "|---|---:|---:|---:|---:|"]
    for name, run in (("fp32", fp32), ("bf16", bf16)):
        if "seconds" not in run:
            lines.append(f"| {name} | — | — | — | — |")
            continue
        ratio = statistics.median(m / e for m, e in zip(run["model_seconds"], run["seconds"], strict=True))
        lines.append(f"| {name} | {_median_seconds(run):.1f} | {_rate(px, _median_seconds(run))} | "
                     f"{_rate(px, statistics.median(run['model_seconds']))} | {100 * ratio:.0f} % |")
    if "seconds" in fp32 and "seconds" in bf16:
        lines += ["", f"`detect` at bf16 runs at {_median_seconds(fp32) / _median_seconds(bf16):.2f}x fp32's rate."]
    return lines


def _loop_lines(run: dict, loop: dict, size: int) -> list[str]:
    px = size * size
    ours, theirs = _median_seconds(run), _median_seconds(loop)
    lines = ["### Against a TorchGeo-style loop", "",
             f"The same model on the same {size}² pair through torchgeo's `RasterDataset` (one per date, "
             "intersected), `GridGeoSampler` of 512² chips (overlap 32), a `DataLoader` with 2 workers, "
             "stitching into a full-size array, then the same decision and vectorising "
             "(pipeline/evaluation/torchgeo_loop.py).", "",
             "| loop | seconds | Mpx/s | km²/s | peak RSS MiB |", "|---|---:|---:|---:|---:|",
             f"| `detect` | {ours:.1f} | {_rate(px, ours)} | {_km2(px, ours)} | {run.get('rss_mb', 0):.0f} |"
             if ours else "| `detect` | — | — | — | stopped |",
             f"| TorchGeo-style | {theirs:.1f} | {_rate(px, theirs)} | {_km2(px, theirs)} | {loop['rss_mb']:.0f} |"
             if theirs else "| TorchGeo-style | — | — | — | stopped |"]
    if ours and theirs:
        lines += ["", f"`detect` runs at {theirs / ours:.1f}x the TorchGeo-style loop's rate."]
    if "within_one_step" in loop:
        lines += ["", f"Their probabilities agree within 1/250 on {100 * loop['within_one_step']:.2f} % of the "
                      f"values seen by both (largest difference {loop['max_steps']}/250; the chips are larger and "
                      "laid out from the lower-left corner, so the network sees other context near chip edges)."]
    return lines


def region_lines(folder: Path, fraction: int = REGION_FRACTION) -> str:
    """The region-sized run's cells per second (pipeline/evaluation/region.py), on a band of Hulunbuir."""
    from pipeline.evaluation.region import region_run

    r = region_run(folder, fraction, progress=False)
    first, last = r.rss_spread()
    return (f"### Region-sized run\n\nThe southernmost 1/{fraction} of Hulunbuir ({r.cells:,} of its "
            f"{r.region_cells:,} cells of 512 px; procedural imagery computed per cell, detector `{r.detector}`, "
            f"{r.workers} worker(s); pipeline/evaluation/region.py) in the same run: **{r.cells_per_s:.2f} cells/s** "
            f"({r.cells_per_s * 5.12**2:.1f} km²/s); the driver's resident memory {first:.0f} MB a quarter in, "
            f"{last:.0f} MB at the last cell; the whole region at this rate would take {r.region_hours:.1f} h. "
            "A larger share and its memory over time: docs/region.md.")


# ---- the demo run, per stage --------------------------------------------------------------------

def bench(repeats: int = 3) -> str:
    """Run the demo `repeats` times plus one traced run; return the markdown section."""
    from pipeline.config import load_config
    from pipeline.demo import write_demo_config
    from pipeline.inputs.aoi import read_aoi
    from pipeline.run import run
    from pipeline.sources.simulated import ensure_simulation

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo"
        config_path = write_demo_config(folder)
        config = load_config(config_path)
        start = time.perf_counter()
        ensure_simulation(config.source.folder, read_aoi(config.aoi).geometry, config.source.seed,
                          config.source.difficulty)
        simulate_s = time.perf_counter() - start
        baseline = config.model_copy(update={"detection": config.detection.model_copy(update={"detector": "baseline"})})
        runs, baseline_s = [], []
        for _ in range(repeats):  # the model and the baseline alternate, so both see the same machine
            t0 = time.perf_counter()
            result = run(config, config_path, fresh=True, progress=False)
            runs.append((time.perf_counter() - t0, result.timer))
            t0 = time.perf_counter()
            run(baseline, config_path, fresh=True, progress=False)
            baseline_s.append(time.perf_counter() - t0)
        tracemalloc.start()
        traced = run(config, config_path, fresh=True, progress=False).timer
        tracemalloc.stop()
    stages = list(runs[0][1].seconds)
    lines = [BEGIN, f"## Demo run, CPU (detector {config.detection.detector})", "",
             f"Machine: {machine()}. Date: {datetime.now(UTC):%Y-%m-%d}. "
             f"Demo: {result.counts['cells']} cells of 512 x 512 px, {result.counts['leads']} leads. "
             f"Median of {repeats} fresh runs; peak memory from one traced run (Python and NumPy allocations).", "",
             "| stage | seconds (median) | calls | peak MiB |", "|---|---:|---:|---:|"]
    for s in stages:
        secs = statistics.median(timer.seconds[s] for _, timer in runs)
        lines.append(f"| {s} | {secs:.2f} | {runs[0][1].calls[s]} | {traced.peak_mb.get(s, 0.0):.0f} |")
    total = statistics.median(t for t, _ in runs)
    base = statistics.median(baseline_s)
    lines += [f"| **whole run** | **{total:.2f}** | | |", "",
              f"The same demo with `detector: baseline`, alternating with the runs above: {base:.2f} s "
              f"(the model's run takes {total / base:.1f}x as long).", "",
              f"Simulating the demo scene (once, before the runs): {simulate_s:.1f} s. "
              f"Peak resident memory of the benchmark process: {max_rss_mb():.0f} MiB.", "",
              compositing_ratio(), END]
    return "\n".join(lines)


def compositing_ratio(repeats: int = 5) -> str:
    """np.nanmedian against our nan_median on one cell's stack (3 acquisitions), side by side."""
    import warnings

    from pipeline.sources.local import nan_median

    rng = np.random.default_rng(0)
    stack = rng.uniform(0, 0.5, (3, 6, 576, 576)).astype(np.float32)
    stack[rng.uniform(size=stack.shape) < 0.1] = np.nan
    numpy_s, ours_s = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            np.nanmedian(stack, axis=0)
        t1 = time.perf_counter()
        nan_median(stack)
        numpy_s.append(t1 - t0)
        ours_s.append(time.perf_counter() - t1)
    a, b = statistics.median(numpy_s), statistics.median(ours_s)
    return (f"Compositing one cell (3 acquisitions x 6 bands x 576 x 576 px, median of {repeats}, side by side): "
            f"np.nanmedian {a * 1000:.0f} ms, eoleads nan_median {b * 1000:.0f} ms ({a / b:.1f}x).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny pairs ({', '.join(f'{s}²' for s in QUICK_SIZES)} px), one run each, no demo "
                             "and no region run: checks that the benchmark works, its figures mean little")
    parser.add_argument("--rss-cap-mb", type=float, default=RSS_CAP_MB)
    parser.add_argument("--workdir", type=Path, default=None, help="where the synthetic pairs are written")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child_main(*args.child)
        return
    if args.quick:
        section = bench_scale(QUICK_SIZES, 1, args.rss_cap_mb, args.workdir, region=False)
        write_section(args.out, section, SCALE_BEGIN, SCALE_END)
        print(section)
        return
    section = bench_scale(SIZES, args.repeats, args.rss_cap_mb, args.workdir)
    write_section(args.out, section, SCALE_BEGIN, SCALE_END)
    print(section)
    demo = bench(args.repeats)
    write_section(args.out, demo, BEGIN, END)
    print(demo)


if __name__ == "__main__":
    main()
