"""`eoleads detect`: a detector on any co-registered before/after GeoTIFF pair, without a run.

For GIS users who hold two images already: writes one probability GeoTIFF per category
(uint8, 0-250 = 0-100 %, 255 = unseen) and a GeoPackage of change polygons held to each
category's mapping unit. No permits are checked: these are changes, not leads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
from affine import Affine

from detectors import load_detector
from detectors.categories import CATEGORY_IDS
from pipeline.atomic import atomic_path
from pipeline.config import ZoneLayer
from pipeline.detection.decision import decide
from pipeline.detection.engine import STRIP, Chunk, Engine, EngineOptions, prepare
from pipeline.detection.probabilities import ProbabilityWriter
from pipeline.detection.tiling import TILING, Tiling
from pipeline.detection.vectorize import merge_across_cells, polygons_from_labels
from pipeline.errors import InputError
from pipeline.inputs.zones import load_zones
from pipeline.sources.pair import PairBands, no_overlap, open_pair
from pipeline.sources.scene import ReadGrid


@dataclass
class DetectResult:
    """What `detect` wrote, and what it could not run."""

    probabilities: Path  # one band per category the detector ran
    changes: Path
    polygons: gpd.GeoDataFrame
    thresholds: dict[str, float]  # the decision thresholds applied: the detector's, with any overrides
    notes: list[str]
    seen_m2: float  # ground seen on both dates, the denominator of any rate per area
    grid: ReadGrid  # the before image's (its UTM zone's where it is in degrees), on which everything was detected


def detect(before: Path, after: Path, out: Path, detector_name: str, zone_layers: list[ZoneLayer] | None = None,
           radiometry: str = "auto", bands: dict[str, int] | None = None, device: str = "auto",
           categories: list[str] | None = None, *, precision: str = "auto", compile: bool = False,
           batch_size: int | None = None, tiling: Tiling = TILING, strip: int = STRIP,
           thresholds: dict[str, float] | None = None) -> DetectResult:
    """Detect changes between two images and write probabilities and polygons into `out`.

    The pair is streamed through the engine in bands of rows within strips of columns:
    probabilities are written and vectorised band by band (patches cut by a band's or a strip's
    edge are joined afterwards, then held to the mapping unit), so memory stays flat whatever
    the size of the images. `thresholds` override the detector's per category (`other` included):
    lower for more changes found at more ground walked for nothing (docs/models.md, "Sensitivity").
    """
    overrides = checked_thresholds(thresholds or {})
    categories = list(categories or CATEGORY_IDS)
    zones = load_zones(zone_layers or [], categories)
    active = [c for c in categories if c not in zones.switched_off]
    detector = prepare(load_detector(detector_name, active, device), precision, compile)
    files = open_pair(Path(before), Path(after), radiometry, bands)
    grid = files.grid
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kept = [i for i, c in enumerate(detector.categories) if c in active]
    written = slice(None) if len(kept) == len(detector.categories) else kept  # a view, not a copy, where all are
    applied = {**detector.thresholds, **overrides}
    resolution = abs(grid.transform.a)  # metres: open_pair gives a metric grid
    parts: list[gpd.GeoDataFrame] = []
    seen_px = 0

    def vectorise(chunk: Chunk, writer: ProbabilityWriter) -> None:
        nonlocal seen_px
        writer.write(chunk.probs[written], chunk.valid, chunk.col)
        labels = decide(chunk.probs, detector.categories, applied, chunk.valid, resolution,
                        keep_border_labels=True)
        transform = grid.transform @ Affine.translation(chunk.col, chunk.row)
        parts.append(polygons_from_labels(labels, chunk.probs, detector.categories, transform, grid.crs, "pair",
                                          resolution))
        seen_px += int(chunk.valid.sum())

    tags = {"DETECTOR": detector.name, "BEFORE": str(before), "AFTER": str(after),
            "THRESHOLDS": ",".join(f"{c}={applied[c]:g}" for c in detector.categories)}
    names = tuple(detector.categories[i] for i in kept)
    with (ProbabilityWriter(out / "probabilities.tif", grid, names, tags) as writer,
          PairBands(files, detector.bands, zones) as pair):
        Engine(detector, tiling, EngineOptions(batch_size, strip=strip)).run(pair.read, grid.height, grid.width,
                                                                lambda chunk: vectorise(chunk, writer), pair.radiometry)
        if not seen_px:  # raised before the probabilities appear: nothing was seen, nothing is written
            raise no_overlap(files)
    polys = merge_across_cells(parts, resolution).to_crs(grid.crs)
    polys = polys.drop(columns=["cell_id", "touches_edge", "before_dates", "after_dates"])
    polys.insert(0, "detector", detector.name)
    changes = out / "changes.gpkg"
    with atomic_path(changes) as tmp:
        polys.to_file(tmp, layer="changes", driver="GPKG", engine="pyogrio")
    seen_m2 = seen_px * abs(grid.transform.a * grid.transform.e)
    return DetectResult(out / "probabilities.tif", changes, polys, applied, [*files.notes, *zones.notes], seen_m2,
                        grid)


def checked_thresholds(thresholds: dict[str, float]) -> dict[str, float]:
    """Threshold overrides, refused with the category and the fix where one is not a category or
    not strictly between 0 and 1 (0 would flag every pixel seen, 1 none)."""
    for cat, value in thresholds.items():
        if cat not in CATEGORY_IDS:
            raise InputError("--threshold", f"thresholds.{cat}", f"{cat!r} is not a category",
                             f"use one of {', '.join(CATEGORY_IDS)}, e.g. other=0.3")
        if not 0 < value < 1:
            raise InputError("--threshold", f"thresholds.{cat}", f"{value:g} is not strictly between 0 and 1",
                             "give a probability such as 0.3 (lower finds more, higher fewer and surer)")
    return dict(thresholds)
