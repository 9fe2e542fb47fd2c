"""`eoleads evaluate`: score a simulated run, or detectors on held-out scenes and real pairs, and
write the figures into docs/models.md and the models' cards."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd

from detectors.learned import resolve_card
from detectors.model_card import ModelCard
from pipeline.atomic import write_text_atomic
from pipeline.errors import InputError
from pipeline.evaluation.heldout import evaluate_held_out
from pipeline.evaluation.real_pairs import flagged_on_real_pairs, implanted_recall
from pipeline.evaluation.report import markdown_table, write_json, write_section
from pipeline.evaluation.scores import score_leads
from pipeline.training.splits import DEMO_SEEDS, HELD_OUT_PAIRS, HELD_OUT_SEEDS

BEGIN, END = "<!-- models:evaluation:begin -->", "<!-- models:evaluation:end -->"


def side_by_side(table: pd.DataFrame) -> str:
    """Detectors side by side per category, as a Markdown table."""
    detectors = list(dict.fromkeys(table.detector))
    rows = []
    for cat in dict.fromkeys(table.category):
        row: dict = {"category": cat}
        for name in detectors:
            r = table[(table.detector == name) & (table.category == cat)].iloc[0]
            row[f"{name} P/R"] = f"{r.precision:.2f}/{r.recall:.2f}" if r.leads else f"-/{r.recall:.2f}"
            row[f"{name} obj F1"] = round(float(r.object_f1), 2)
            row[f"{name} px F1"] = round(float(r.pixel_f1), 2) if pd.notna(r.pixel_f1) else "-"
            row[f"{name} IoU"] = round(float(r.pixel_iou), 2) if pd.notna(r.pixel_iou) else "-"
        rows.append(row)
    return markdown_table(rows)


def report(table: pd.DataFrame, demo: pd.DataFrame | None, real: pd.DataFrame | None, implants: pd.DataFrame | None,
           seeds: int) -> str:
    """The Markdown section of docs/models.md."""
    from datetime import UTC, datetime

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
    write_text_atomic(card_path, card.model_copy(update={"metrics": metrics}).to_json())


def score_run(folder: Path) -> pd.DataFrame:
    """Object-level scores of a finished simulated run's leads against its planted truth."""
    folder = Path(folder)
    leads, truth = folder / "leads.gpkg", folder / "inputs" / "truth.gpkg"
    manifest = folder / "manifest.json"
    if manifest.exists():  # the simulated scene lives where the run's configuration put it
        source = json.loads(manifest.read_text(encoding="utf-8"))["config"]["source"]
        recorded = Path(source.get("folder", "")) / "truth.gpkg"
        if source.get("type") == "simulated" and recorded.exists():  # else the folder has moved: inputs/
            truth = recorded
    for path, what in ((leads, "no leads.gpkg: run the configuration first"),
                       (truth, "no inputs/truth.gpkg: only runs on the simulated source have a ground truth")):
        if not path.exists():
            raise InputError(path, None, what, "give the run folder of a finished simulated run, e.g. runs/demo")
    return score_leads(gpd.read_file(leads, layer="leads"), gpd.read_file(truth, layer="changes"))


SHOWN = ["detector", "category", "expected", "found", "leads", "recall", "precision", "object_f1", "pixel_f1",
         "pixel_iou", "flagged_permitted"]


def evaluate_detectors(detectors: list[str], out: Path, scenes: int = len(HELD_OUT_SEEDS), demo_seeds: bool = False,
                       real_pairs: Path | None = None, write_docs: bool = False, progress: bool = True,
                       docs: Path = Path("docs/models.md")) -> None:
    """Every measurement side by side, printed, kept as JSON in `out`, and with `write_docs` written
    into docs/models.md and each model's card."""
    out.mkdir(parents=True, exist_ok=True)
    seeds = tuple(range(HELD_OUT_SEEDS[0], HELD_OUT_SEEDS[0] + scenes))
    table = evaluate_held_out(detectors, out / "scenes", seeds, progress=progress)
    write_json(table, out / "held_out.json")
    print(table[SHOWN].to_string(index=False))
    demo = None
    if demo_seeds:
        demo = evaluate_held_out(detectors, out / "demo_scenes", DEMO_SEEDS, progress, difficulty="demo")
        write_json(demo, out / "demo_scenes.json")
        print()
        print(demo[SHOWN].to_string(index=False))
    real = implants = None
    if real_pairs:
        real = flagged_on_real_pairs(detectors, real_pairs, out / "real_pairs", HELD_OUT_PAIRS, progress=progress)
        write_json(real, out / "real_pairs.json")
        implants = implanted_recall(detectors, real_pairs, out / "implants", HELD_OUT_PAIRS)
        write_json(implants, out / "implants.json")
        print()
        print(real.to_string(index=False))
        print()
        print(implants.to_string(index=False))
    print(f"\ntables written to {out}")
    if write_docs:
        write_section(docs, report(table, demo, real, implants, len(seeds)), BEGIN, END)
        for name in detectors:
            if name != "baseline":
                record_in_card(resolve_card(name), table, real, implants, name)
        print(f"{docs} and the model cards updated")
