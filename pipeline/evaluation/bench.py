"""`make bench`: time and peak memory of each stage on the demo, written to docs/benchmarks.md.

Times are medians of several fresh runs; peak memory comes from one extra run under
tracemalloc (which slows allocation, so it is not timed). The simulated scene is made once and
timed on its own. The section between the markers in the output file is replaced; anything
else in the file (GPU figures, notes) is kept.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from pipeline.config import load_config
from pipeline.demo import write_demo_config
from pipeline.evaluation.report import machine, write_section
from pipeline.inputs.aoi import read_aoi
from pipeline.profiling import max_rss_mb
from pipeline.run import run
from pipeline.sources.simulated import ensure_simulation

BEGIN, END = "<!-- bench:demo:begin -->", "<!-- bench:demo:end -->"


def bench(repeats: int = 3) -> str:
    """Run the demo `repeats` times plus one traced run; return the markdown section."""
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

    import numpy as np

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    section = bench(args.repeats)
    write_section(args.out, section, BEGIN, END)
    print(section)


if __name__ == "__main__":
    main()
