"""Measuring detectors honestly: held-out simulated scenes and real image pairs.

Held-out scenes come from seeds no training or validation scene uses, with harder settings
(detectors.simulator.settings.HELD_OUT), and are run through the whole pipeline, so the scores
are those of the leads a user gets: object-level precision and recall at the mapping unit, and
pixel F1 and IoU of the detected change polygons against the planted truth. On real pairs
(without zones or permits) the area flagged per 100 km² bounds the false-alarm rate from above.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import yaml
from tqdm import tqdm

from detectors.categories import CATEGORY_IDS, get_category
from detectors.evaluation import score_leads
from pipeline.aoi import hulun_lake
from pipeline.config import load_config
from pipeline.demo import demo_config
from pipeline.run import run
from pipeline.scene import ReadGrid
from pipeline.training.scenes import HELD_OUT_SEEDS, random_aoi

#: Demo-difficulty scenes on the demo AOI, the figures docs/categories.md gives for the baseline.
DEMO_SEEDS = (7, 11, 23, 31, 43)


def _scene_config(folder: Path, seed: int, detector: str, difficulty: str) -> Path:
    """A demo-like configuration for one scene and one detector, inputs shared between detectors.

    Held-out scenes lie on a random stretch of the lake shore; demo-difficulty scenes on the demo AOI.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(seed, detector)
    cfg.update(name=f"{difficulty}-{seed}-{detector}", output=f"run-{detector}", evidence=False)
    if difficulty == "held_out":
        aoi = folder / "aoi.geojson"
        if not aoi.exists():
            lake, _ = hulun_lake()
            gdf = gpd.GeoDataFrame(geometry=[random_aoi(np.random.default_rng(seed), lake)], crs="EPSG:4326")
            gdf.to_file(aoi)
        cfg.update(aoi=["aoi.geojson"])
        cfg["source"]["difficulty"] = "held_out"
    path = folder / f"{detector}.yaml"
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
        for det in detectors:
            cfg_path = _scene_config(folder / str(seed), seed, det, difficulty)
            config = load_config(cfg_path)
            result = run(config, cfg_path.resolve(), fresh=True, progress=False)
            inputs = config.source.folder
            objects = score_leads(result.leads, gpd.read_file(inputs / "truth.gpkg", layer="changes"))
            objects = objects[objects.category != "all"]
            merged = objects.merge(_pixel_counts(config.output, inputs), on="category")
            merged.insert(0, "detector", det)
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


def flagged_on_real_pairs(detectors: list[str], pairs: Path, out: Path, held_out: tuple[str, ...],
                          progress: bool = True) -> pd.DataFrame:
    """Area flagged per 100 km² of seen ground on each real pair, no zones and no permits."""
    from pipeline.detect import detect

    rows = []
    folders = sorted(p for p in Path(pairs).iterdir() if (p / "before.tif").exists())
    for d in tqdm(folders, desc="real pairs", unit="pair", disable=not progress):
        for det in detectors:
            result = detect(d / "before.tif", d / "after.tif", out / d.name / det, det, radiometry="L1C")
            seen_km2 = result.seen_m2 / 1e6
            area = result.polygons.area_m2.sum() / 1e6 if len(result.polygons) else 0.0
            rows.append({"pair": d.name, "detector": det, "held_out": d.name in held_out,
                         "km2": round(seen_km2, 1), "flagged_km2_per_100km2": round(100 * area / seen_km2, 2),
                         **{c: round(100 * result.polygons.area_m2[result.polygons.category == c].sum() / 1e6
                                     / seen_km2, 2) for c in sorted(set(result.polygons.category))}})
    return pd.DataFrame(rows).fillna(0.0)


def write_json(table: pd.DataFrame, path: Path) -> None:
    """A table as JSON records, for the model card and docs."""
    path.write_text(json.dumps(table.to_dict(orient="records"), indent=1, ensure_ascii=False), encoding="utf-8")


BEGIN, END = "<!-- models:evaluation:begin -->", "<!-- models:evaluation:end -->"


def side_by_side(table: pd.DataFrame) -> str:
    """Detectors side by side per category, as a Markdown table."""
    from pipeline.bench import markdown_table

    detectors = list(dict.fromkeys(table.detector))
    rows = []
    for cat in dict.fromkeys(table.category):
        row: dict = {"category": cat}
        for det in detectors:
            r = table[(table.detector == det) & (table.category == cat)].iloc[0]
            row[f"{det} P/R"] = f"{r.precision:.2f}/{r.recall:.2f}" if r.leads else f"-/{r.recall:.2f}"
            row[f"{det} obj F1"] = round(float(r.object_f1), 2)
            row[f"{det} px F1"] = round(float(r.pixel_f1), 2) if pd.notna(r.pixel_f1) else "-"
            row[f"{det} IoU"] = round(float(r.pixel_iou), 2) if pd.notna(r.pixel_iou) else "-"
        rows.append(row)
    return markdown_table(rows)


def report(table: pd.DataFrame, demo: pd.DataFrame | None, real: pd.DataFrame | None, implants: pd.DataFrame | None,
           seeds: int) -> str:
    """The Markdown section of docs/models.md."""
    from datetime import UTC, datetime

    from pipeline.bench import markdown_table

    parts = [BEGIN, f"Measured {datetime.now(UTC).date().isoformat()} with `eoleads evaluate --held-out` on {seeds} "
             "held-out scenes (seeds 3000+, `difficulty: held_out`), whole pipeline, permits applied. P/R: "
             "object-level precision and recall of leads at the mapping unit; px F1 and IoU: detected change "
             "polygons against planted changes, pixel by pixel.", "", side_by_side(table)]
    if demo is not None:
        parts += ["", f"The demo's own scene and settings, seeds {', '.join(map(str, DEMO_SEEDS))} (the demo is seed "
                  "7):", "", side_by_side(demo)]
    if real is not None and len(real):
        wide = real.pivot_table(index=["pair", "held_out", "km2"], columns="detector",
                                values="flagged_km2_per_100km2").reset_index()
        wide.columns = [str(c) for c in wide.columns]
        parts += ["", "Area flagged as change on the real Sentinel-2 L1C pairs, km² per 100 km² of seen ground, "
                  "no zones and no permits (so only temporary land, forest, wetland and mine run). `held_out`: "
                  "the pair was never used for training.", "", markdown_table(wide.to_dict(orient="records"))]
    if implants is not None and len(implants):
        parts += ["", "Changes of the categories that run without zones (temporary land, forest, wetland, mine) "
                  "implanted into the after image of the three pairs never used for training, as in training "
                  "but at fixed seeds; an implant counts if it is at least its category's mapping unit, and is "
                  "found if a change of its category overlaps it. `outside`: area flagged away from every "
                  "implant (km² per 100 km²).", "", markdown_table(implants.rename(
                      columns={"flagged_outside_km2_per_100km2": "outside"}).to_dict(orient="records"))]
    parts.append(END)
    return "\n".join(parts)


def record_in_card(card_path: Path, table: pd.DataFrame, real: pd.DataFrame | None, implants: pd.DataFrame | None,
                   detector: str) -> None:
    """Put one detector's held-out and real-pair figures into its model card (the weights hash is unchanged)."""
    from detectors.model_card import ModelCard

    card = ModelCard.read(card_path)
    metrics = dict(card.metrics)
    cols = ["category", "expected", "found", "leads", "recall", "precision", "object_f1", "pixel_f1", "pixel_iou"]
    metrics["held_out"] = json.loads(table[table.detector == detector][cols].to_json(orient="records"))
    if real is not None and len(real):
        metrics["real_pairs_flagged_km2_per_100km2"] = json.loads(
            real[real.detector == detector][["pair", "held_out", "flagged_km2_per_100km2"]].to_json(orient="records"))
    if implants is not None and len(implants):
        metrics["real_pairs_implanted_recall"] = json.loads(implants[implants.detector == detector].to_json(
            orient="records"))
    card.model_copy(update={"metrics": metrics}).write(card_path)


#: What runs without zone layers, so implants of it can be found in a pair run without zones.
ZONELESS = ("temporary_land", "forest", "wetland", "mine")


def implanted_recall(detectors: list[str], pairs: Path, out: Path, names: tuple[str, ...], count: int = 16,
                     seed: int = 0) -> pd.DataFrame:
    """Changes implanted into real pairs the model never trained on: of those at least their
    category's mapping unit, how many each detector finds (a change of the implant's category
    overlapping it), and the area flagged outside all implants."""
    from scipy import ndimage

    from pipeline.detect import detect
    from pipeline.pair import read_pair
    from pipeline.training.implants import implant

    rows = []
    for name in names:
        folder = Path(pairs) / name
        pair = read_pair(folder / "before.tif", folder / "after.tif")
        rng = np.random.default_rng([seed, len(name)])
        after, labels, _ = implant(pair.before, pair.after, rng, count, ZONELESS)
        labels = labels * pair.valid
        work = out / name
        work.mkdir(parents=True, exist_ok=True)
        with rasterio.open(folder / "after.tif") as src:
            profile = src.profile | {"dtype": "uint16", "nodata": 0}
            tags, descriptions = src.tags(), src.descriptions
        implanted = work / "after_implanted.tif"
        with rasterio.open(implanted, "w", **profile) as dst:
            dst.write(np.clip(np.round(np.nan_to_num(after) * 10000), 1, 65535).astype("uint16"))
            dst.update_tags(**tags)
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d or "")
        objects, n = ndimage.label(labels > 0)
        pixel_m2 = abs(pair.grid.transform.a * pair.grid.transform.e)
        sizes = np.bincount(objects.ravel(), minlength=n + 1) * pixel_m2
        cats = [CATEGORY_IDS[int(np.bincount(labels[objects == k]).argmax()) - 1] if k else "" for k in range(n + 1)]
        judged = [k for k in range(1, n + 1) if sizes[k] >= get_category(cats[k]).min_area_m2]  # above the unit
        near_implants = ndimage.binary_dilation(labels > 0, iterations=2)
        for det in detectors:
            result = detect(folder / "before.tif", implanted, work / det, det, radiometry="L1C")
            polys = result.polygons
            flagged = {c: pair.grid.mask(list(polys.geometry[polys.category == c])) for c in set(cats[1:])}
            found = sum(int(flagged[cats[k]][objects == k].any()) for k in judged)
            outside = pair.grid.mask(list(polys.geometry)) & ~near_implants
            rows.append({"pair": name, "detector": det, "implanted": len(judged), "found": found,
                         "recall": round(found / len(judged), 2) if judged else float("nan"),
                         "flagged_outside_km2_per_100km2": round(100 * float(outside.sum()) * pixel_m2
                                                                 / result.seen_m2, 2)})
    return pd.DataFrame(rows)
