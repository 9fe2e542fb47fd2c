"""One run, end to end: AOI -> cells -> scenes -> probabilities -> polygons -> leads -> GeoPackage."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd
from tqdm import tqdm

from detectors import load_detector, weights_hash
from detectors.categories import CATEGORY_IDS
from detectors.interface import Detector
from pipeline.atomic import write_json_atomic
from pipeline.config import RunConfig
from pipeline.detection.decision import decide
from pipeline.detection.inference import predict_scene
from pipeline.detection.probabilities import write_probabilities
from pipeline.detection.vectorize import merge_across_cells, polygons_from_labels
from pipeline.errors import EoleadsError
from pipeline.inputs.aoi import read_aoi
from pipeline.inputs.grid import Cell, make_cells
from pipeline.inputs.permits import load_permits
from pipeline.inputs.zones import Zones, load_zones
from pipeline.leads.evidence import overview_map, write_evidence
from pipeline.leads.overlay import make_leads
from pipeline.outputs.geopackage import write_geopackage
from pipeline.outputs.mosaic import write_probability_mosaics
from pipeline.outputs.qgis_style import category_style_qml, layer_styles
from pipeline.outputs.runfolder import RunFolder, versions
from pipeline.profiling import StageTimer, max_rss_mb
from pipeline.sources import ImagerySource, read_scene
from pipeline.sources.scene import ReadGrid

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Where the outputs are, and the counts the summary prints."""

    geopackage: Path | None  # None when this process ran one shard and other cells are still pending
    leads: gpd.GeoDataFrame
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)
    timer: StageTimer = field(default_factory=StageTimer)
    failed_cells: list[str] = field(default_factory=list)  # not looked at: the leads are incomplete


def process_cell(cell: Cell, config: RunConfig, source: ImagerySource, zones: Zones, detector: Detector,
                 folder: RunFolder, timer: StageTimer) -> dict:
    """Detect changes in one cell and commit its folder; returns the cell record."""
    m = config.grid.margin_px
    size = cell.size_px + 2 * m
    grid = ReadGrid(cell.crs, cell.transform(m), size, size)
    record: dict = {"cell_id": cell.id, "epsg": cell.epsg, "status": "done"}
    with timer("imagery"):
        scene = read_scene(source, grid, config.windows)
    staging = folder.staging(cell.id)
    if scene is None:
        record.update(status="skipped", reason="no imagery in one of the windows")
        folder.commit(cell.id, staging, record)
        return record
    with timer("zones"):
        zone_masks = zones.masks(grid)
    with timer("detect"):
        probs, stats = predict_scene(scene, zone_masks, detector, config.detection.tiling)
        unused = [i for i, c in enumerate(detector.categories)
                  if c not in config.categories or c in zones.switched_off]
        probs[unused] = 0.0  # whatever the detector does with them, they are not this run's
    core = (slice(m, m + cell.size_px), slice(m, m + cell.size_px))
    probs = probs[(slice(None), *core)]
    valid = scene.valid[core]
    with timer("vectorize"):
        core_grid = ReadGrid(cell.crs, cell.transform(), cell.size_px, cell.size_px)
        in_aoi = core_grid.mask([cell.aoi_part])
        thresholds = {**detector.thresholds, **config.detection.thresholds}
        labels = decide(probs, detector.categories, thresholds)
        labels[~(in_aoi & valid)] = 0
        dates = tuple(",".join(d.isoformat() for d in c.dates) for c in (scene.before, scene.after))
        polys = polygons_from_labels(labels, probs, detector.categories, cell.transform(), cell.crs, cell.id,
                                     cell.resolution, dates, outside=~in_aoi)
    with timer("write cells"):
        write_probabilities(staging / "probabilities.tif", probs, valid, core_grid, detector.categories)
        polys.to_file(staging / "detections.gpkg", layer="detections", driver="GPKG", engine="pyogrio")
    aoi_px = int(in_aoi.sum())
    record.update(tiles=stats.tiles, tiles_without_data=stats.tiles_without_data, detections=len(polys),
                  aoi_pixels=aoi_px, unobserved_aoi_pixels=int((in_aoi & ~valid).sum()),
                  before_dates=[d.isoformat() for d in scene.before.dates],
                  after_dates=[d.isoformat() for d in scene.after.dates])
    folder.commit(cell.id, staging, record)
    return record


def run(config: RunConfig, config_path: Path | None = None, fresh: bool = False, progress: bool = True,
        shard: tuple[int, int] | None = None) -> RunResult:
    """Run a configuration into its output folder, resuming finished cells.

    With `shard=(k, n)` only every n-th cell starting at the k-th (1-based) is processed, so n
    jobs (GPUs, machines sharing the folder) split a region; the outputs are merged by whichever
    run finds every cell finished, or by running again without a shard.
    """
    timer = StageTimer()
    weights = weights_hash(config.detection.detector)
    folder = RunFolder(config.output, config, config_path, weights)
    if fresh:
        folder.wipe()
    folder.open()
    with timer("aoi and grid"):
        aoi = read_aoi(config.aoi)
        cells = make_cells(aoi.geometry, config.grid.cell_size_px, config.grid.resolution_m)
    with timer("imagery"):
        source = config.source.build(aoi.geometry)  # first: a simulated source writes the demo's permits
    with timer("zones"):
        zones = load_zones(config.zones, config.categories)
    with timer("permits"):
        permits = load_permits(config.permits)
    detector = load_detector(config.detection.detector, [c for c in config.categories if c not in zones.switched_off],
                              config.device)
    assigned = cells if shard is None else cells[shard[0] - 1::shard[1]]
    processed, failed = 0, {}
    for cell in tqdm(assigned, desc="cells", unit="cell", disable=not progress):
        if not folder.is_done(cell.id):
            try:
                process_cell(cell, config, source, zones, detector, folder, timer)
            except EoleadsError:
                raise  # the user's input is wrong for every cell: stop and say so
            except Exception as exc:  # one bad cell: recorded, not committed (so retried), the run goes on
                log.exception("cell %s failed", cell.id)
                failed[cell.id] = f"failed ({exc.__class__.__name__}: {exc}); run again to retry it"
            processed += 1
    pending = [c.id for c in cells if not folder.is_done(c.id) and c.id not in failed]
    if pending:
        counts = {"cells": len(cells), "cells_processed": processed, "cells_pending": len(pending),
                  "cells_failed": len(failed)}
        return RunResult(None, gpd.GeoDataFrame(geometry=[]), counts, [], timer, sorted(failed))
    records = [folder.cell_record(c.id) if c.id not in failed else
               {"cell_id": c.id, "status": "failed", "reason": failed[c.id]} for c in cells]
    resumed = len(cells) - processed

    write_probability_mosaics(config.output, cells, detector.categories)
    with timer("merge"):
        parts = [gpd.read_file(folder.cell_dir(r["cell_id"]) / "detections.gpkg", engine="pyogrio")
                 for r in records if r["status"] == "done"]
        detections = merge_across_cells(parts, config.grid.resolution_m)
    with timer("leads"):
        leads, detections = make_leads(detections, permits.table, config.windows, detector.name)
    notes = [*aoi.notes, *zones.notes, *permits.notes]
    skipped = [r for r in records if r["status"] != "done"]
    for r in skipped:
        notes.append(f"cell {r['cell_id']} {'failed' if r['status'] == 'failed' else 'skipped'}: {r['reason']}")
    counts = {"cells": len(cells), "cells_resumed": resumed, "cells_skipped": len(skipped) - len(failed),
              "cells_failed": len(failed),
              "tiles_without_data": sum(r.get("tiles_without_data", 0) for r in records),
              "unobserved_aoi_pixels": sum(r.get("unobserved_aoi_pixels", 0) for r in records),
              "detections": len(detections), "leads": len(leads),
              **{f"leads_{c}": int((leads.category == c).sum()) if len(leads) else 0 for c in CATEGORY_IDS}}
    with timer("evidence"):  # redone or removed on every run: pictures of another run's leads mislead
        (config.output / "leads_map.png").unlink(missing_ok=True)
        if config.evidence:
            leads["evidence"] = write_evidence(leads, source, config.windows, config.output,
                                               config.grid.resolution_m, progress)
            if len(leads):
                overview_map(leads, aoi.features, config.output / "leads_map.png")
        else:
            shutil.rmtree(config.output / "evidence", ignore_errors=True)
    with timer("export"):
        out_crs = config.output_crs
        cells_gdf = _cells_layer(cells, records, out_crs)
        run_table = _run_table(config, config_path, folder.fingerprint, weights, counts, notes, timer)
        gpkg = write_geopackage(config.output / "leads.gpkg", {
            "leads": leads.to_crs(out_crs), "detections": detections.to_crs(out_crs),
            "permits": permits.table.to_crs(out_crs), "aoi": aoi.features.to_crs(out_crs), "cells": cells_gdf,
            "run": run_table,
            "layer_styles": layer_styles({"leads": category_style_qml(),
                                          "detections": category_style_qml(label_field=None, fill_alpha=40)}),
        })
        write_json_atomic(config.output / "summary.json", {"counts": counts, "notes": notes,
                                                           "stages": timer.table(), "max_rss_mb": max_rss_mb()})
    return RunResult(gpkg, leads, counts, notes, timer, sorted(failed))


def _cells_layer(cells: list[Cell], records: list[dict], crs: str) -> gpd.GeoDataFrame:
    """Every cell with its status, reprojected zone by zone (one transform per zone, not per cell)."""
    frames = []
    for epsg in sorted({c.epsg for c in cells}):
        pairs = [(c, r) for c, r in zip(cells, records, strict=True) if c.epsg == epsg]
        frames.append(gpd.GeoDataFrame(
            {"cell_id": [c.id for c, _ in pairs], "epsg": epsg, "status": [r["status"] for _, r in pairs],
             "detections": [r.get("detections", 0) for _, r in pairs],
             "unobserved_pixels": [r.get("unobserved_aoi_pixels", 0) for _, r in pairs]},
            geometry=[c.geometry for c, _ in pairs], crs=f"EPSG:{epsg}").to_crs(crs))
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=crs)


def _run_table(config: RunConfig, config_path: Path | None, fingerprint: str, weights: str, counts: dict,
               notes: list[str], timer: StageTimer) -> pd.DataFrame:
    rows = [("name", config.name), ("fingerprint", fingerprint),
            ("config_file", str(config_path or "")), ("config", config.model_dump_json()),
            ("versions", json.dumps(versions())), ("detector", config.detection.detector),
            ("detector_weights_sha256", weights),
            ("inputs", json.dumps([str(p) for p in [*config.aoi, *(p.path for p in config.permits),
                                                    *(z.path for z in config.zones)]], ensure_ascii=False)),
            *((f"count_{k}", str(v)) for k, v in counts.items()),
            *((f"note_{i + 1}", n) for i, n in enumerate(notes)),
            ("stages", json.dumps(timer.table()))]
    return pd.DataFrame(rows, columns=["key", "value"])
