"""`make gpu-check`: verify and time the GPU path of the shipped model in one call.

Checks that autocast inference on the GPU agrees with fp32 on the CPU on a real demo tile
batch, times tiles per second in fp32 and under autocast (channels_last) for several batch
sizes, times the whole demo run on the GPU and the CPU side by side, and writes the figures
with the card's name into docs/benchmarks.md. Without a CUDA device it says so and exits 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from detectors import DEFAULT_MODEL
from detectors.learned import SegmentationDetector, resolve_card
from pipeline.evaluation.report import machine, write_section

BEGIN, END = "<!-- bench:gpu:begin -->", "<!-- bench:gpu:end -->"


def demo_tiles(folder: Path, n: int, tile: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` tiles (before, after, valid) of the simulated demo scene, composited as in a run."""
    import rasterio

    from pipeline.config import Windows
    from pipeline.demo import DEMO_AOI, DEMO_SEED, demo_config
    from pipeline.inputs.aoi import read_aoi
    from pipeline.sources.local import LocalGeoTiffSource
    from pipeline.sources.scene import ReadGrid
    from pipeline.sources.simulated import ensure_simulation

    ensure_simulation(folder, read_aoi([DEMO_AOI]).geometry, DEMO_SEED)
    files = sorted((folder / "imagery").glob("*.tif"))
    with rasterio.open(files[0]) as src:
        grid = ReadGrid(src.crs.to_string(), src.transform, src.width, src.height)
    source = LocalGeoTiffSource([str(f) for f in files])
    windows = Windows.model_validate(demo_config()["windows"])  # the demo run's own windows
    before = source.composite(grid, windows.baseline)
    after = source.composite(grid, windows.monitoring)
    rows = np.arange(n) * 97 % (grid.height - tile)
    cols = np.arange(n) * 211 % (grid.width - tile)
    pick = [(slice(None), slice(r, r + tile), slice(c, c + tile)) for r, c in zip(rows, cols, strict=True)]
    valid = before.valid & after.valid
    return (np.stack([before.reflectance[p] for p in pick]), np.stack([after.reflectance[p] for p in pick]),
            np.stack([valid[p[1:]] for p in pick]))


def _tiles_per_second(detector: SegmentationDetector, stack: np.ndarray, repeats: int) -> float:
    detector.probabilities(stack)  # warm-up (cuDNN autotune, allocator)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        detector.probabilities(stack)
        times.append(time.perf_counter() - t)
    return len(stack) / statistics.median(times)


def check(device: str, model: str = DEFAULT_MODEL, batches: tuple[int, ...] = (8, 32, 64), repeats: int = 5,
          demo_runs: int = 2, scene: Path | None = None) -> list[str]:
    """The report lines; raises AssertionError if the device's answers differ from the CPU's.

    `scene` is a folder holding (or to receive) the simulated demo scene; `demo_runs=0` skips
    timing whole runs.
    """
    import torch

    card = resolve_card(model)
    cpu = SegmentationDetector.load(card, device="cpu")
    dev = SegmentationDetector.load(card, device=device)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else machine()
    lines = [BEGIN, f"## GPU path ({cpu.name})", "",
             f"Device: {name}. Host: {machine()}. Date: {datetime.now(UTC):%Y-%m-%d}. torch {torch.__version__}.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        before, after, valid = demo_tiles(scene or Path(tmp) / "scene", max(batches))
        stack = cpu.inputs(before[:8], after[:8], valid[:8], {})
        ref = cpu.probabilities(stack)
        got = dev.probabilities(stack)
        agree = float((ref.argmax(1) == got.argmax(1))[valid[:8]].mean())
        diff = float(np.abs(ref - got).max())
        lines.append(f"Autocast on {device} against fp32 on the CPU, 8 demo tiles: max |Δp| {diff:.4f}, "
                     f"same class for {100 * agree:.2f} % of valid pixels.")
        assert agree > 0.99, f"GPU and CPU disagree on {100 * (1 - agree):.2f} % of pixels"
        lines += ["", "| batch | precision | tiles/s (256 x 256, median) |", "|---:|---|---:|"]
        full = cpu.inputs(before, after, valid, {})
        for b in batches:
            for auto in (False, True):
                dev.autocast = auto
                rate = _tiles_per_second(dev, full[:b], repeats)
                lines.append(f"| {b} | {'autocast, channels_last' if auto else 'fp32'} | {rate:.0f} |")
        dev.autocast = True
        lines.append(f"| 8 | CPU fp32 (same call) | {_tiles_per_second(cpu, full[:8], 2):.1f} |")
        lines += ["", _demo_timing(device, demo_runs, Path(tmp)) if demo_runs else "", END]
    return lines


def _demo_timing(device: str, repeats: int, tmp: Path) -> str:
    """Whole demo run on the device and on the CPU, medians side by side."""
    from pipeline.config import load_config
    from pipeline.demo import write_demo_config
    from pipeline.run import run

    seconds = {}
    for dev in (device, "cpu"):
        path = write_demo_config(tmp / f"demo-{dev}")
        config = load_config(path).model_copy(update={"device": dev})
        run(config, path.resolve(), fresh=True, progress=False)  # simulation and warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            run(config, path.resolve(), fresh=True, progress=False)
            times.append(time.perf_counter() - t)
        seconds[dev] = statistics.median(times)
    return (f"Whole demo run (median of {repeats}, simulation excluded): {device} {seconds[device]:.1f} s, "
            f"CPU {seconds['cpu']:.1f} s ({seconds['cpu'] / seconds[device]:.1f}x).")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device; nothing to check", file=sys.stderr)
        sys.exit(1)
    lines = check("cuda", args.model)
    write_section(args.out, "\n".join(lines), BEGIN, END)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
