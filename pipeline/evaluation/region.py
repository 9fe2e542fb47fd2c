"""`make region-bench`: a Hulunbuir-sized AOI over procedural imagery, end to end, with its cells/s and memory.

The AOI is the league's extent (115.5-126.1°E, 47.0-53.4°N, ~21,000 cells of 512 px at 10 m). The
imagery is computed cell by cell (pipeline/sources/procedural.py), so nothing is downloaded or
stored but the run folder itself. `--fraction N` runs the southernmost 1/N of the extent (a band
of whole latitude), merge and all, and extrapolates to the whole; `--fraction 1` is the whole
region, by the same command. While the run goes, the resident memory of this process (which holds
the run folder and merges) and of its worker processes is sampled with the cells finished, to show
it stays flat. The section between the markers of docs/region.md is replaced; the rest is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import yaml
from shapely.geometry import box, mapping

from pipeline.atomic import write_json_atomic
from pipeline.config import load_config
from pipeline.evaluation.report import machine, write_section
from pipeline.inputs.grid import make_cells, plan_grid
from pipeline.run import run

#: The extent of Hulunbuir (呼伦贝尔), WGS84: the region-sized AOI.
HULUNBUIR = (115.5, 47.0, 126.1, 53.4)
BEGIN, END = "<!-- bench:region:begin -->", "<!-- bench:region:end -->"


@dataclass
class RegionResult:
    """What one region run measured."""

    fraction: int
    detector: str
    workers: int
    cells: int  # the cells of the band run
    region_cells: int  # the cells of the whole extent
    seconds: float  # the whole run, merge included
    cell_seconds: float  # from the first to the last finished cell
    merge_seconds: float
    counts: dict
    samples: list[tuple[float, float, float, int]] = field(default_factory=list)  # (s, driver MB, total MB, cells)

    @property
    def cells_per_s(self) -> float:
        return self.cells / self.cell_seconds if self.cell_seconds else 0.0

    @property
    def region_hours(self) -> float:
        """The whole extent's cells at this rate, with the merge's per-cell cost scaled up."""
        merge_per_cell = self.merge_seconds / max(self.cells, 1)
        return self.region_cells * (1 / max(self.cells_per_s, 1e-9) + merge_per_cell) / 3600

    def rss_spread(self) -> tuple[float, float]:
        """The driver's resident memory (MB) a quarter into the cells and at the last cell: flat if close."""
        committed = max((s[3] for s in self.samples), default=0)  # cells without usable imagery are not committed
        during = [s for s in self.samples if 0 < s[3] < committed]
        if not during:
            return 0.0, 0.0
        quarter = next((s for s in during if s[3] >= committed / 4), during[0])
        return quarter[1], during[-1][1]


def band_aoi(fraction: int) -> tuple[float, float, float, float]:
    """The southernmost 1/`fraction` of the Hulunbuir extent, across its whole width."""
    west, south, east, north = HULUNBUIR
    return west, south, east, south + (north - south) / fraction


def write_region_config(folder: Path, fraction: int, detector: str = "baseline", workers: int | None = None,
                        seed: int = 0) -> Path:
    """The AOI band and a run configuration for it, in `folder`. Evidence, the dossier and the register are
    off: they scale with the leads, not the cells, and the region bench times the cells."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "aoi.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": f"Hulunbuir extent, 1/{fraction}"},
         "geometry": mapping(box(*band_aoi(fraction)))}]}), encoding="utf-8")
    config = {"name": f"region-1of{fraction}", "aoi": ["aoi.geojson"], "output": "out", "register": None,
              "evidence": False, "report": False, "allow_partial_coverage": True, "device": "auto",
              "windows": {"baseline": {"start": "2024-07-01", "end": "2024-08-31"},
                          "monitoring": {"start": "2025-07-01", "end": "2025-08-31"}},
              "source": {"type": "procedural", "seed": seed}, "detection": {"detector": detector},
              "cluster": {"workers": workers}}
    path = folder / "region.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


class _Sampler(threading.Thread):
    """Resident memory of this process and its children, and the finished cells, once a second."""

    def __init__(self, cells_dir: Path) -> None:
        super().__init__(daemon=True)
        self.cells_dir, self.samples, self._halt = cells_dir, [], threading.Event()
        self.start_time = time.perf_counter()

    def run(self) -> None:
        me = psutil.Process()
        while not self._halt.wait(1.0):
            driver = me.memory_info().rss
            total = driver
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # a worker that just ended
                    pass
            done = sum(1 for e in os.scandir(self.cells_dir) if not e.name.startswith(".") and e.name != "damaged") \
                if self.cells_dir.is_dir() else 0
            self.samples.append((time.perf_counter() - self.start_time, driver / 2**20, total / 2**20, done))

    def stop(self) -> list[tuple[float, float, float, int]]:
        self._halt.set()
        self.join()
        return self.samples


def region_run(folder: Path, fraction: int = 20, detector: str = "baseline", workers: int | None = None,
               progress: bool = True) -> RegionResult:
    """Run the band of the region afresh in `folder` and measure it."""
    path = write_region_config(folder, fraction, detector, workers)
    config = load_config(path)
    region_cells = plan_grid(box(*HULUNBUIR), config.grid.cell_size_px, config.grid.resolution_m).cells
    cells = len(make_cells(box(*band_aoi(fraction)), config.grid.cell_size_px, config.grid.resolution_m))
    sampler = _Sampler(config.output / "cells")
    sampler.start()
    start = time.perf_counter()
    try:
        result = run(config, path, fresh=True, progress=progress)
    finally:
        samples = sampler.stop()
    seconds = time.perf_counter() - start
    committed = max((s[3] for s in samples), default=0)  # cells without usable imagery are not committed
    started = next((s[0] for s in samples if s[3] > 0), 0.0)
    finished = next((s[0] for s in samples if s[3] >= committed), seconds)
    used = workers or 1
    return RegionResult(fraction, detector, used, cells, region_cells, seconds, max(finished - started, 1e-9),
                        result.timer.seconds.get("merge", 0.0), result.counts, samples)


def section(r: RegionResult, figure: str | None) -> str:
    """The markdown section of docs/region.md for a measured run."""
    first, last = r.rss_spread()
    scale = "the whole region" if r.fraction == 1 else f"the southern 1/{r.fraction} of the extent (a band of " \
        f"{r.cells:,} of its {r.region_cells:,} cells), extrapolated to the whole"
    lines = [BEGIN, "## Measured", "",
             f"Machine: {machine()}. Date: {datetime.now(UTC):%Y-%m-%d}. Command: `python -m "
             f"pipeline.evaluation.region --fraction {r.fraction} --detector {r.detector}"
             + (f" --workers {r.workers}" if r.workers > 1 else "") + "`.", "",
             f"Run: {scale}; procedural imagery (computed per cell, nothing stored), detector `{r.detector}`, "
             f"{r.workers} worker(s); evidence, dossier and register off.", "",
             "| figure | value |", "|---|---:|",
             f"| cells run | {r.cells:,} |",
             f"| cells/s (first to last finished cell) | {r.cells_per_s:.2f} |",
             f"| km²/s | {r.cells_per_s * 5.12 ** 2:.1f} |",
             f"| whole run incl. merge, s | {r.seconds:.0f} |",
             f"| merge, s (reading every cell's detections, joining across cells) | {r.merge_seconds:.1f} |",
             f"| detections / leads | {r.counts.get('detections', 0):,} / {r.counts.get('leads', 0):,} |",
             f"| driver RSS a quarter in / at the last cell, MB | {first:.0f} / {last:.0f} |",
             f"| peak RSS, driver / with workers, MB | {max((s[1] for s in r.samples), default=0):.0f} / "
             f"{max((s[2] for s in r.samples), default=0):.0f} |",
             f"| whole region ({r.region_cells:,} cells) at this rate, hours | {r.region_hours:.1f} |"]
    if figure:
        lines += ["", f"![Resident memory and finished cells over the run]({figure})"]
    return "\n".join([*lines, END])


def plot(r: RegionResult, path: Path) -> None:
    """Resident memory (driver, and with workers) and finished cells against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s[0] for s in r.samples]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.plot(t, [s[1] for s in r.samples], label="driver RSS (MB)")
    if r.workers > 1:
        ax.plot(t, [s[2] for s in r.samples], label="driver + workers RSS (MB)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    cells = ax.twinx()
    cells.plot(t, [s[3] for s in r.samples], color="grey", linestyle="--", label="cells finished")
    cells.set_ylabel("cells finished")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Hulunbuir extent, 1/{r.fraction}: {r.cells:,} cells, {r.cells_per_s:.2f} cells/s", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=int, default=20, help="run 1/N of the extent (1: the whole region)")
    parser.add_argument("--detector", default="baseline", help="'baseline' or a model (default: baseline)")
    parser.add_argument("--workers", type=int, help="local Dask workers (default: one per GPU for a model, else 1)")
    parser.add_argument("--out", default="runs/region", help="run folder parent (default: runs/region)")
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/region.md")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args()
    r = region_run(Path(args.out), args.fraction, args.detector, args.workers, not args.quiet)
    write_json_atomic(Path(args.out) / "region-bench.json", {
        "fraction": r.fraction, "detector": r.detector, "workers": r.workers, "cells": r.cells,
        "region_cells": r.region_cells, "seconds": r.seconds, "cells_per_s": r.cells_per_s,
        "merge_seconds": r.merge_seconds, "region_hours": r.region_hours, "counts": r.counts, "samples": r.samples})
    figure = None
    if args.write_docs:
        figure = "img/region_memory.png"
        plot(r, Path("docs") / figure)
    text = section(r, figure)
    print(text)
    if args.write_docs:
        write_section(Path("docs/region.md"), text, BEGIN, END)


if __name__ == "__main__":
    main()
