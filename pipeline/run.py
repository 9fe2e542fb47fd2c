"""One run, end to end: AOI -> cells -> scenes -> probabilities -> polygons -> leads -> GeoPackage."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from detectors import weights_hash
from detectors.categories import CATEGORY_IDS, OTHER_ID
from detectors.interface import Detector
from pipeline.atomic import write_json_atomic
from pipeline.cluster import CellContext, run_cells, run_detector
from pipeline.config import RunConfig, Windows
from pipeline.detection.decision import decide
from pipeline.detection.engine import arithmetic, prepare
from pipeline.detection.inference import predict_scene
from pipeline.detection.probabilities import write_probabilities
from pipeline.detection.vectorize import merge_across_cells, polygons_from_labels
from pipeline.inputs.aoi import AOI, read_aoi
from pipeline.inputs.grid import Cell, make_cells, plan_grid
from pipeline.inputs.permits import load_permits
from pipeline.inputs.zones import Zones, load_zones
from pipeline.leads.confidence import assess_confidence
from pipeline.leads.evidence import evidence_path, overview_map, write_evidence
from pipeline.leads.overlay import make_leads
from pipeline.leads.priority import load_priority_layers, prioritise
from pipeline.leads.register import check_register
from pipeline.outputs.dossier import RunFacts, dossier_paths, write_dossier
from pipeline.outputs.geopackage import write_geopackage
from pipeline.outputs.mosaic import style_sidecar, write_probability_mosaics
from pipeline.outputs.runfolder import DamagedCell, RunFolder, RunInterrupted, versions
from pipeline.profiling import StageTimer, max_rss_mb
from pipeline.sources import ImagerySource, read_scene
from pipeline.sources.remembered import RememberedComposites
from pipeline.sources.scene import ReadGrid, Scene

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
    unobserved_cells: list[str] = field(default_factory=list)  # no usable imagery: not looked at either
    acquisitions: dict[str, list[str]] = field(default_factory=dict)  # window -> dates that saw the AOI
    partial_allowed: bool = False  # the user accepts leads that do not cover unobserved cells

    @property
    def exit_code(self) -> int:
        """1 where the leads leave cells unlooked at (failed, every cell unobserved, or some unobserved
        without `allow_partial_coverage`): "0 leads" must never read as "nothing there"."""
        everything = self.unobserved_cells and len(self.unobserved_cells) == self.counts.get("cells")
        if self.failed_cells or everything or (self.unobserved_cells and not self.partial_allowed):
            return 1
        return 0


def example_ids(ids: list[str], shown: int = 5) -> str:
    """A few cell ids and how many more: a region has thousands of cells."""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


def dates_found(acquisitions: dict[str, list[str]]) -> str:
    """The acquisition dates a run found, window by window, for the summary."""
    return "; ".join(f"{window}: {', '.join(dates) or 'none'}" for window, dates in acquisitions.items())


def _unobserved_reason(scene: Scene, core: tuple[slice, slice], in_aoi: np.ndarray, windows: Windows) -> str:
    """Which window saw nothing of the cell's AOI part, in words that are the same for every such cell."""
    blind = [f"{name} window ({w.start} to {w.end})" for name, comp, w in
             (("baseline", scene.before, windows.baseline), ("monitoring", scene.after, windows.monitoring))
             if not (comp.valid[core] & in_aoi).any()]
    seen = (f"no valid pixel in the {' nor the '.join(blind)}: no acquisition covers it, or those that do hold "
            "only no-data, cloud or snow") if blind else "the two windows saw no pixel of it in common"
    return f"not seen: {seen}; not stored as finished, the next run retries it"


def process_cell(cell: Cell, config: RunConfig, source: ImagerySource, zones: Zones, detector: Detector,
                 folder: RunFolder, timer: StageTimer) -> dict:
    """Detect changes in one cell and commit its folder; returns the cell record.

    A cell whose AOI part was not seen on both dates is not committed: its record (status
    "unobserved") says why, and the next run tries it again, when the imagery may have arrived.
    """
    m = config.grid.margin_px
    size = cell.size_px + 2 * m
    grid = ReadGrid(cell.crs, cell.transform(m), size, size)
    with timer("imagery"):
        scene = read_scene(source, grid, config.windows)
    core = (slice(m, m + cell.size_px), slice(m, m + cell.size_px))
    core_grid = ReadGrid(cell.crs, cell.transform(), cell.size_px, cell.size_px)
    in_aoi = core_grid.mask([cell.aoi_part])
    valid = scene.valid[core]
    record: dict = {"cell_id": cell.id, "epsg": cell.epsg, "status": "done",
                    "before_dates": [d.isoformat() for d in scene.before.dates],
                    "after_dates": [d.isoformat() for d in scene.after.dates]}
    if not (in_aoi & valid).any():
        return {**record, "status": "unobserved", "reason": _unobserved_reason(scene, core, in_aoi, config.windows)}
    staging = folder.staging(cell.id)
    with timer("zones"):
        zone_masks = zones.masks(grid)
    with timer("detect"):
        detector = prepare(detector, config.detection.precision, config.detection.compile)
        record["arithmetic"] = arithmetic(detector)
        probs, stats = predict_scene(scene, zone_masks, detector, config.detection.tiling)
        unused = [i for i, c in enumerate(detector.categories)
                  if c not in config.categories or c in zones.switched_off]
        probs[unused] = 0.0  # whatever the detector does with them, they are not this run's
    probs = probs[(slice(None), *core)]
    with timer("vectorize"):
        thresholds = {**detector.thresholds, **config.detection.thresholds}
        labels = decide(probs, detector.categories, thresholds, seen=in_aoi & valid, pixel_m=cell.resolution,
                        keep_border_labels=True, outside=~in_aoi)
        dates = tuple(",".join(d.isoformat() for d in c.dates) for c in (scene.before, scene.after))
        polys = polygons_from_labels(labels, probs, detector.categories, cell.transform(), cell.crs, cell.id,
                                     cell.resolution, dates, outside=~in_aoi)
    with timer("write cells"):
        write_probabilities(staging / "probabilities.tif", probs, valid, core_grid, detector.categories)
        polys.to_file(staging / "detections.gpkg", layer="detections", driver="GPKG", engine="pyogrio")
    aoi_px = int(in_aoi.sum())
    record.update(tiles=stats.tiles, tiles_without_data=stats.tiles_without_data, detections=len(polys),
                  aoi_pixels=aoi_px, unobserved_aoi_pixels=int((in_aoi & ~valid).sum()))
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
    with timer("aoi and grid"):
        aoi = read_aoi(config.aoi)
        grid_plan = plan_grid(aoi.geometry, config.grid.cell_size_px, config.grid.resolution_m)
        config.limits.check(grid_plan, config_path)  # before the folder is touched (--fresh) or a cell is made
    if progress:
        print(grid_plan.summary(), file=sys.stderr)
    weights = weights_hash(config.detection.detector)
    with RunFolder(config.output, config, config_path, weights).open(fresh, shard) as folder:
        try:
            return _run(folder, config, config_path, progress, shard, weights, aoi, timer)
        except KeyboardInterrupt:
            raise RunInterrupted(f"{folder.progress()}; the finished cells are kept: run the same command again "
                                 "to resume") from None


def _run(folder: RunFolder, config: RunConfig, config_path: Path | None, progress: bool,
         shard: tuple[int, int] | None, weights: str, aoi: AOI, timer: StageTimer) -> RunResult:
    """The run itself, in a folder this job holds."""
    with timer("aoi and grid"):
        cells = make_cells(aoi.geometry, config.grid.cell_size_px, config.grid.resolution_m)
    with timer("imagery"):
        source = config.source.build(aoi.geometry)  # first: a simulated source writes the demo's permits
    with timer("zones"):
        zones = load_zones(config.zones, config.categories, aoi.geometry)
    with timer("permits"):
        permits = load_permits(config.permits, aoi.geometry)
        reference = load_priority_layers(config.priority_layers, aoi.geometry)
    detector = run_detector(config, zones)
    assigned = cells if shard is None else cells[shard[0] - 1::shard[1]]
    folder.expect(c.id for c in cells)
    processed, failed, unobserved = 0, {}, {}
    todo = [c for c in assigned if not folder.resume(c.id)]
    context = CellContext(config, folder, source, zones, detector)  # in this process or on a cluster: same outcomes
    for outcome in run_cells(todo, context, aoi.geometry, weights, timer, progress, len(assigned) - len(todo)):
        if outcome.failure is not None:  # not committed: retried by the next run
            failed[outcome.cell_id] = outcome.failure
        elif outcome.record["status"] == "unobserved":  # not committed either
            unobserved[outcome.cell_id] = outcome.record
        processed += 1
    pending = [c.id for c in cells if not folder.is_done(c.id) and c.id not in failed and c.id not in unobserved]
    if pending or not folder.start_merge(again=shard is None):  # other jobs still at work, or one merges
        counts = {"cells": len(cells), "cells_processed": processed, "cells_pending": len(pending),
                  "cells_failed": len(failed), "cells_unobserved": len(unobserved)}
        return RunResult(None, gpd.GeoDataFrame(geometry=[]), counts, [], timer, sorted(failed), sorted(unobserved),
                         partial_allowed=config.allow_partial_coverage)
    records = [unobserved[c.id] if c.id in unobserved else folder.cell_record(c.id) if c.id not in failed else
               {"cell_id": c.id, "status": "failed", "reason": failed[c.id]} for c in cells]
    resumed = len(cells) - processed

    mosaics = write_probability_mosaics(config.output, cells, detector.categories)
    outputs: list[Path | str] = [*mosaics, *map(style_sidecar, mosaics)]
    with timer("merge"):
        parts = []
        for i, cell in enumerate(cells):
            if records[i]["status"] != "done":
                continue
            try:
                parts.append(folder.detections(cell.id))
            except DamagedCell as err:  # set aside and done again; damaged again, the run stops
                folder.set_aside(cell.id, f"{err.path}: {err.problem}")
                records[i] = process_cell(cell, config, source, zones, detector, folder, timer)
                if records[i]["status"] == "done":
                    parts.append(folder.detections(cell.id))
        detections = merge_across_cells(parts, config.grid.resolution_m)
    with timer("leads"):
        leads, detections = make_leads(detections, permits.table, config.windows, detector.name, zones.land_classes)
    chips = RememberedComposites(source)  # confidence, evidence and dossier read the same chip of a lead
    with timer("confidence"):
        thresholds = {**detector.thresholds, **config.detection.thresholds}
        other = thresholds[OTHER_ID] if OTHER_ID in config.categories else None  # else its band is all zeros
        leads, confidence_notes = assess_confidence(leads, chips, config.windows, mosaics, other,
                                                    config.grid.resolution_m, progress)
        leads = prioritise(leads, reference)  # the register and the dossier keep this order
    with timer("leads"):
        register = check_register(leads, config) if config.lead_register else None  # recorded after the export
        leads = register.leads if register else leads
    notes = [*aoi.notes, *zones.notes, *permits.notes, *reference.notes, *getattr(source, "notes", []), *folder.notes,
             *confidence_notes]
    notes += register.notes if register else []
    by_reason: dict[str, list[str]] = {}  # one note per reason, not one per cell
    for r in records:
        if r["status"] != "done":
            by_reason.setdefault(r["reason"], []).append(r["cell_id"])
    notes += [f"{len(ids)} cell(s) ({example_ids(ids)}) {reason}" for reason, ids in by_reason.items()]
    unseen = [r["cell_id"] for r in records if r["status"] not in ("done", "failed")]  # also "skipped" of old runs
    acquisitions = {window: sorted({d for r in records for d in r.get(key, [])})
                    for window, key in (("baseline", "before_dates"), ("monitoring", "after_dates"))}
    if unseen:
        notes.insert(0, f"WARNING: {len(unseen)} of {len(cells)} cell(s) were not seen on both dates (no usable "
                        f"imagery); the leads do not cover them. Acquisitions found: {dates_found(acquisitions)}")
    counts = {"cells": len(cells), "cells_resumed": resumed, "cells_unobserved": len(unseen),
              "cells_failed": len(failed),
              "tiles_without_data": sum(r.get("tiles_without_data", 0) for r in records),
              "unobserved_aoi_pixels": sum(r.get("unobserved_aoi_pixels", 0) for r in records),
              "detections": len(detections), "leads": len(leads),
              **{f"leads_{c}": int((leads.category == c).sum()) if len(leads) else 0 for c in CATEGORY_IDS},
              **(register.counts if register else {})}
    with timer("evidence"):  # redone on every run; pictures of leads this run has not are removed at its end
        if config.evidence:
            folder.claim([*(evidence_path(i) for i in leads.lead_id), "leads_map.png"])
            leads["evidence"] = write_evidence(leads, chips, config.windows, config.output,
                                               config.grid.resolution_m, progress)
            outputs += [p for p in leads.evidence if p]
            if len(leads):
                overview_map(leads, aoi.features, config.output / "leads_map.png")
                outputs.append("leads_map.png")
    with timer("report"):  # like the evidence: redone on every run, pages of leads that are gone removed at its end
        if config.report:
            folder.claim(dossier_paths(leads.lead_id))
            facts = RunFacts(config.name, config.windows, _detector_version(weights), notes)
            outputs += write_dossier(config.output, leads, permits.table, aoi.features, chips, facts,
                                     config.grid.resolution_m, progress)
    outputs += ["leads.gpkg", "summary.json"]
    folder.claim(outputs)
    with timer("export"):
        out_crs = config.output_crs
        cells_gdf = _cells_layer(cells, records, out_crs)
        run_table = _run_table(config, config_path, folder.fingerprint, weights, counts, notes, timer, acquisitions)
        gpkg = write_geopackage(config.output / "leads.gpkg", {
            "leads": leads.to_crs(out_crs), "detections": detections.to_crs(out_crs),
            "permits": permits.table.to_crs(out_crs), "aoi": aoi.features.to_crs(out_crs), "cells": cells_gdf,
            "run": run_table,
        }, rasters=mosaics)
        write_json_atomic(config.output / "summary.json", {"counts": counts, "notes": notes,
                                                           "acquisitions": acquisitions, "unobserved_cells": unseen,
                                                           "stages": timer.table(), "max_rss_mb": max_rss_mb()})
    if register:
        register.commit()
    folder.finish_merge(outputs)
    return RunResult(gpkg, leads, counts, notes, timer, sorted(failed), unseen, acquisitions,
                     config.allow_partial_coverage)


def _detector_version(weights: str) -> str:
    """The eoleads version and the weights' hash: together they say which model drew the leads."""
    return f"eoleads {versions()['eoleads']}" + (f", weights sha256 {weights[:12]}" if weights else "")


def _cells_layer(cells: list[Cell], records: list[dict], crs: str) -> gpd.GeoDataFrame:
    """Every cell with its status, reprojected zone by zone (one transform per zone, not per cell)."""
    frames = []
    for epsg in sorted({c.epsg for c in cells}):
        pairs = [(c, r) for c, r in zip(cells, records, strict=True) if c.epsg == epsg]
        frames.append(gpd.GeoDataFrame(
            {"cell_id": [c.id for c, _ in pairs], "epsg": epsg, "status": [r["status"] for _, r in pairs],
             "reason": [r.get("reason", "") for _, r in pairs],
             "detections": [r.get("detections", 0) for _, r in pairs],
             "unobserved_pixels": [r.get("unobserved_aoi_pixels", 0) for _, r in pairs],
             "arithmetic": [r.get("arithmetic", "") for _, r in pairs]},
            geometry=[c.geometry for c, _ in pairs], crs=f"EPSG:{epsg}").to_crs(crs))
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=crs)


def _run_table(config: RunConfig, config_path: Path | None, fingerprint: str, weights: str, counts: dict,
               notes: list[str], timer: StageTimer, acquisitions: dict[str, list[str]]) -> pd.DataFrame:
    rows = [("name", config.name), ("fingerprint", fingerprint),
            ("config_file", str(config_path or "")), ("config", config.model_dump_json()),
            ("versions", json.dumps(versions())), ("detector", config.detection.detector),
            ("detector_weights_sha256", weights),
            ("inputs", json.dumps([str(p) for p in [*config.aoi, *(p.path for p in config.permits),
                                                    *(z.path for z in config.zones),
                                                    *(r.path for r in config.priority_layers)]],
                                   ensure_ascii=False)),
            *((f"count_{k}", str(v)) for k, v in counts.items()),
            *((f"acquisitions_{w}", ",".join(dates) or "none") for w, dates in acquisitions.items()),
            *((f"note_{i + 1}", n) for i, n in enumerate(notes)),
            ("stages", json.dumps(timer.table()))]
    return pd.DataFrame(rows, columns=["key", "value"])
