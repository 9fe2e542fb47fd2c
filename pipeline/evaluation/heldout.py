"""Measuring detectors honestly: held-out simulated scenes and real image pairs.

Held-out scenes come from seeds no training or validation scene uses, with harder settings
(pipeline.simulator.settings.HELD_OUT), and are run through the whole pipeline, so the scores
are those of the leads a user gets: object-level precision and recall at the mapping unit, and
pixel F1 and IoU of the detected change polygons against the planted truth. On real pairs
(without zones or permits) the area flagged per 100 km² bounds the false-alarm rate from above.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import yaml
from tqdm import tqdm

from detectors import detector_label
from detectors.categories import CATEGORY_IDS
from pipeline.config import load_config
from pipeline.demo import demo_config
from pipeline.evaluation.scores import score_leads
from pipeline.inputs.aoi import hulun_lake
from pipeline.run import run
from pipeline.sources.scene import ReadGrid
from pipeline.training.scenes import random_aoi
from pipeline.training.splits import HELD_OUT_SEEDS


def _scene_config(folder: Path, seed: int, detector: str, difficulty: str) -> Path:
    """A demo-like configuration for one scene and one detector, inputs shared between detectors.

    Held-out scenes lie on a random stretch of the lake shore; demo-difficulty scenes on the demo AOI.
    """
    folder.mkdir(parents=True, exist_ok=True)
    label = detector_label(detector)
    cfg = demo_config(seed, str(Path(detector).resolve()) if detector.endswith(".json") else detector)
    cfg.update(name=f"{difficulty}-{seed}-{label}", output=f"run-{label}", evidence=False)
    if difficulty == "held_out":
        aoi = folder / "aoi.geojson"
        if not aoi.exists():
            lake, _ = hulun_lake()
            gdf = gpd.GeoDataFrame(geometry=[random_aoi(np.random.default_rng(seed), lake)], crs="EPSG:4326")
            gdf.to_file(aoi)
        cfg.update(aoi=["aoi.geojson"])
        cfg["source"]["difficulty"] = "held_out"
    path = folder / f"{label}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _pixel_counts(run_dir: Path, inputs: Path) -> pd.DataFrame:
    """Per category: pixels detected and true, and their overlap, on the simulation's grid."""
    with rasterio.open(sorted((inputs / "imagery").glob("*.tif"))[0]) as src:
        grid = ReadGrid(src.crs.to_string(), src.transform, src.width, src.height)
    detections = gpd.read_file(run_dir / "leads.gpkg", layer="detections")
    truth = gpd.read_file(inputs / "truth.gpkg", layer="changes").to_crs(grid.crs)
    detections = detections.to_crs(grid.crs) if len(detections) else detections
    rows = []
    for cat in CATEGORY_IDS:
        pred = grid.mask(list(detections.geometry[detections.category == cat]))
        true = grid.mask(list(truth.geometry[truth.category == cat]))
        rows.append({"category": cat, "tp_px": int((pred & true).sum()), "fp_px": int((pred & ~true).sum()),
                     "fn_px": int((~pred & true).sum())})
    return pd.DataFrame(rows)


def evaluate_held_out(detectors: list[str], folder: Path, seeds: tuple[int, ...] = HELD_OUT_SEEDS,
                      progress: bool = True, difficulty: str = "held_out") -> pd.DataFrame:
    """Scores per detector and category over all scenes (counts summed, then ratios)."""
    rows = []
    for seed in tqdm(seeds, desc=f"{difficulty} scenes", unit="scene", disable=not progress):
        for name in detectors:
            cfg_path = _scene_config(folder / str(seed), seed, name, difficulty)
            config = load_config(cfg_path)
            result = run(config, cfg_path.resolve(), fresh=True, progress=False)
            inputs = config.source.folder
            objects = score_leads(result.leads, gpd.read_file(inputs / "truth.gpkg", layer="changes"))
            objects = objects[objects.category != "all"]
            merged = objects.merge(_pixel_counts(config.output, inputs), on="category")
            merged.insert(0, "detector", name)
            merged.insert(1, "seed", seed)
            rows.append(merged)
    return summarise(pd.concat(rows, ignore_index=True))


def summarise(per_scene: pd.DataFrame) -> pd.DataFrame:
    """Ratios from summed counts, per detector and category, with an 'all' row per detector."""
    cols = ["expected", "found", "leads", "true_leads", "flagged_permitted", "tp_px", "fp_px", "fn_px"]
    by_cat = per_scene.groupby(["detector", "category"], sort=False)[cols].sum().reset_index()
    total = per_scene.groupby("detector", sort=False)[cols].sum().reset_index().assign(category="all")
    df = pd.concat([by_cat, total], ignore_index=True)
    df["recall"] = df.found / df.expected.where(df.expected > 0)
    df["precision"] = df.true_leads / df.leads.where(df.leads > 0)
    df["object_f1"] = (2 * df.precision * df.recall / (df.precision + df.recall)).fillna(0.0)
    df["pixel_f1"] = 2 * df.tp_px / (2 * df.tp_px + df.fp_px + df.fn_px).where(lambda s: s > 0)
    df["pixel_iou"] = df.tp_px / (df.tp_px + df.fp_px + df.fn_px).where(lambda s: s > 0)
    order = {c: i for i, c in enumerate([*CATEGORY_IDS, "all"])}
    df = df.sort_values(["detector", "category"], key=lambda s: s.map(order) if s.name == "category" else s)
    return df.round(3).reset_index(drop=True)


