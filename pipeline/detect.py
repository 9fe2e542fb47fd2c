"""`eoleads detect`: a detector on any co-registered before/after GeoTIFF pair, without a run.

For GIS users who hold two images already: writes one probability GeoTIFF per category
(uint8, 0-250 = 0-100 %, 255 = unseen) and a GeoPackage of change polygons held to each
category's mapping unit. No permits are checked: these are changes, not leads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd

from detectors import load_detector
from detectors.categories import CATEGORY_IDS
from pipeline.atomic import atomic_path
from pipeline.config import ZoneLayer
from pipeline.detection.decision import decide
from pipeline.detection.inference import predict_arrays
from pipeline.detection.probabilities import write_probabilities
from pipeline.detection.vectorize import merge_across_cells, polygons_from_labels
from pipeline.inputs.zones import load_zones
from pipeline.sources.pair import read_pair
from pipeline.sources.scene import ReadGrid


@dataclass
class DetectResult:
    """What `detect` wrote, and what it could not run."""

    probabilities: Path  # one band per category the detector ran
    changes: Path
    polygons: gpd.GeoDataFrame
    notes: list[str]
    seen_m2: float  # ground seen on both dates, the denominator of any rate per area
    grid: ReadGrid  # the before image's, on which everything was detected


def detect(before: Path, after: Path, out: Path, detector_name: str, zone_layers: list[ZoneLayer] | None = None,
           radiometry: str = "auto", bands: dict[str, int] | None = None, device: str = "auto",
           categories: list[str] | None = None) -> DetectResult:
    """Detect changes between two images and write probabilities and polygons into `out`."""
    categories = list(categories or CATEGORY_IDS)
    zones = load_zones(zone_layers or [], categories)
    active = [c for c in categories if c not in zones.switched_off]
    detector = load_detector(detector_name, active, device)
    pair = read_pair(Path(before), Path(after), radiometry, bands, wanted=detector.bands)
    valid = pair.valid
    zone_masks = zones.masks(pair.grid)
    probs, _ = predict_arrays(pair.before, pair.after, valid, zone_masks, detector)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = pair.grid
    kept = [i for i, c in enumerate(detector.categories) if c in active]
    probability = write_probabilities(out / "probabilities.tif", probs[kept], valid, grid,
                                      tuple(detector.categories[i] for i in kept),
                                      {"DETECTOR": detector.name, "BEFORE": str(before), "AFTER": str(after)})
    labels = decide(probs, detector.categories, detector.thresholds)
    resolution = abs(grid.transform.a)
    polys = polygons_from_labels(labels, probs, detector.categories, grid.transform, grid.crs, "pair", resolution)
    polys = merge_across_cells([polys], resolution).to_crs(grid.crs)
    polys = polys.drop(columns=["cell_id", "touches_edge", "before_dates", "after_dates"])
    polys.insert(0, "detector", detector.name)
    changes = out / "changes.gpkg"
    with atomic_path(changes) as tmp:
        polys.to_file(tmp, layer="changes", driver="GPKG", engine="pyogrio")
    seen_m2 = float(valid.sum()) * abs(grid.transform.a * grid.transform.e)
    return DetectResult(probability, changes, polys, zones.notes, seen_m2, grid)
