"""`eoleads plan`: what a run would fetch (cells, scenes, requests, bytes) before anything is downloaded.

Each source configuration model answers `plan(aoi_wgs84, cells, windows) -> SourcePlan`; it may
search a catalog but must not read pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
from shapely import STRtree
from shapely.geometry import box

if TYPE_CHECKING:
    from pipeline.config import RunConfig, Windows
    from pipeline.inputs.grid import Cell
    from pipeline.sources.local import ImageFile


@dataclass
class SourcePlan:
    """The figures of one source for one configuration."""

    source: str
    cells: int
    scenes: int
    requests: int
    bytes: int
    processing_units: float | None = None  # Sentinel Hub only
    notes: list[str] = field(default_factory=list)


def cell_footprints_wgs84(cells: list[Cell]) -> list:
    """Each cell's square in WGS84, reprojected zone by zone (one transform per zone, not per cell)."""
    out: list = [None] * len(cells)
    for epsg in sorted({c.epsg for c in cells}):
        idx = [i for i, c in enumerate(cells) if c.epsg == epsg]
        geoms = gpd.GeoSeries([cells[i].geometry for i in idx], crs=epsg).to_crs("EPSG:4326")
        for i, g in zip(idx, geoms, strict=True):
            out[i] = g
    return out


def scenes_per_cell(cells: list[Cell], footprints_wgs84: list[tuple[float, float, float, float]]) -> np.ndarray:
    """How many of the scene footprints (WGS84 bounds) touch each cell."""
    counts = np.zeros(len(cells), dtype=np.int64)
    if not cells or not footprints_wgs84:
        return counts
    tree = STRtree([box(*f) for f in footprints_wgs84])
    cell_idx, _ = tree.query(cell_footprints_wgs84(cells), predicate="intersects")
    np.add.at(counts, cell_idx, 1)
    return counts


def in_windows(when: date, windows: Windows) -> bool:
    """Whether an acquisition date falls in the baseline or the monitoring window."""
    return any(w.start <= when <= w.end for w in (windows.baseline, windows.monitoring))


def cell_bytes(cell: Cell, bands: int, bytes_per_sample: int = 2) -> int:
    """Uncompressed bytes of one acquisition's bands over one cell (halo not counted)."""
    return cell.size_px * cell.size_px * bands * bytes_per_sample


def coverage(cells: list[Cell], scenes: list[tuple[date, tuple[float, float, float, float]]],
             windows: Windows) -> tuple[np.ndarray, list[str]]:
    """Scenes (date, WGS84 bounds) touching each cell over both windows, and a note on cells a window misses."""
    per_window = [scenes_per_cell(cells, [fp for when, fp in scenes if w.start <= when <= w.end])
                  for w in (windows.baseline, windows.monitoring)]
    unseen = int(((per_window[0] == 0) | (per_window[1] == 0)).sum())
    notes = [f"{unseen} of {len(cells)} cells have no scene in the baseline or the monitoring window; "
             "a run skips them"] if unseen else []
    return per_window[0] + per_window[1], notes


def plan_files(source: str, acquisitions: list[ImageFile], cells: list[Cell], windows: Windows) -> SourcePlan:
    """Files already on disk: what matched and what falls in the windows; nothing is downloaded."""
    chosen = [a for a in acquisitions if in_windows(a.when, windows)]
    _, notes = coverage(cells, [(a.when, a.footprint) for a in chosen], windows)
    return SourcePlan(source, len(cells), len(chosen), 0, 0, notes=[
        f"{len(acquisitions)} file(s) matched, {len(chosen)} in the windows; read from disk, nothing downloaded",
        *notes])


def plan_simulation(folder: Path, cells: list[Cell], windows: Windows) -> SourcePlan:
    """The simulator's scenes: its files where it has run, else the dates it will simulate."""
    from pipeline.simulator.plan import Timeline
    from pipeline.sources.local import inspect_file

    files = sorted((folder / "imagery").glob("*.tif")) if (folder / "simulation.json").exists() else []
    if files:
        return plan_files("simulated", [inspect_file(f) for f in files], cells, windows)
    timeline = Timeline()
    dates = [d for d in (*timeline.before, *timeline.after) if in_windows(d, windows)]
    return SourcePlan("simulated", len(cells), len(dates), 0, 0, notes=[
        f"the simulator writes {len(dates)} scene(s) in the windows into {folder} on the first run; "
        "nothing is downloaded"])


def plan_config(config: RunConfig, config_path: Path | None = None) -> SourcePlan:
    """Read the AOI, lay out the cells (after the same size limits a run checks) and ask the
    configured source for its figures."""
    from pipeline.inputs.aoi import read_aoi
    from pipeline.inputs.grid import make_cells, plan_grid

    aoi = read_aoi(config.aoi)
    config.limits.check(plan_grid(aoi.geometry, config.grid.cell_size_px, config.grid.resolution_m), config_path)
    cells = make_cells(aoi.geometry, config.grid.cell_size_px, config.grid.resolution_m)
    plan = config.source.plan(aoi.geometry, cells, config.windows)
    plan.notes[:0] = aoi.notes
    return plan


def format_plan(plan: SourcePlan) -> str:
    """The figures as the command line prints them."""
    lines = [f"source: {plan.source}",
             f"  cells:     {plan.cells:>12,}",
             f"  scenes:    {plan.scenes:>12,}",
             f"  requests:  {plan.requests:>12,}",
             f"  bytes:     {plan.bytes:>12,}  ({plan.bytes / 1e9:.2f} GB)"]
    if plan.processing_units is not None:
        lines.append(f"  processing units: {plan.processing_units:,.1f}")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)
