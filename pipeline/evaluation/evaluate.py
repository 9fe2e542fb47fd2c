"""`eoleads evaluate`: score a simulated run, or detectors on held-out scenes and real pairs side
by side with a change-vector-analysis floor, and write the figures into docs/models.md and the
models' cards."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd

from detectors.learned import resolve_card
from detectors.model_card import ModelCard
from pipeline.atomic import write_text_atomic
from pipeline.errors import InputError
from pipeline.evaluation.heldout import evaluate_held_out
from pipeline.evaluation.real_change import CVA, evaluation_bank, implanted_pairs, labelled_cities
from pipeline.evaluation.real_pairs import flagged_on_real_pairs
from pipeline.evaluation.report import markdown_table, write_json, write_section
from pipeline.evaluation.scores import score_leads
from pipeline.sources.labelled import load_labelled_pairs
from pipeline.training.real_chips import load_unlabelled
from pipeline.training.splits import CITY_FOLDS, DEMO_SEEDS, HELD_OUT_PAIRS, HELD_OUT_SEEDS, SHIPPED_FOLD

BEGIN, END = "<!-- models:evaluation:begin -->", "<!-- models:evaluation:end -->"


@dataclass
class Evaluation:
    """Every table of one evaluation; the real-pair tables are None where no pairs were given."""

    held_out: pd.DataFrame
    seeds: int
    demo: pd.DataFrame | None = None
    cities: pd.DataFrame | None = None
    implants: pd.DataFrame | None = None
    real: pd.DataFrame | None = None


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


def real_change_summary(ev: Evaluation) -> pd.DataFrame:
    """The one table: each detector and the CVA floor on held-out real cities, on implants into
    pairs never trained on, and on the simulated held-out scenes."""
    names = list(dict.fromkeys([*ev.held_out.detector, CVA]))
    rows = []
    for name in names:
        row: dict = {"detector": name}
        if ev.cities is not None:
            c = ev.cities[ev.cities.detector == name].iloc[0]
            row.update({"cities px P": c.pixel_precision, "px R": c.pixel_recall, "px F1": c.pixel_f1,
                        "obj R ≥0.5 ha": c.object_recall})
        if ev.implants is not None:
            m = ev.implants[ev.implants.detector == name].iloc[0]
            surfaces = [k for k in m.index if k not in ("detector", "all", "false_alarm_ha_per_km2")]
            row.update({"implants R": m["all"], "worst surface R": min(float(m[k]) for k in surfaces
                                                                         if pd.notna(m[k])),
                        "false ha/km²": m["false_alarm_ha_per_km2"]})
        sim = ev.held_out[(ev.held_out.detector == name) & (ev.held_out.category == "all")]
        row["simulated obj F1"] = round(float(sim.object_f1.iloc[0]), 3) if len(sim) else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def report(ev: Evaluation, cities: tuple[str, ...], pairs: tuple[str, ...]) -> str:
    """The Markdown section of docs/models.md."""
    parts = [BEGIN, f"Measured {datetime.now(UTC).date().isoformat()} with `make evaluate`."]
    if ev.cities is not None or ev.implants is not None:
        parts += ["", f"**Real change, side by side.** `eoleads detect` with its defaults (no zone file, the "
                  f"detector's thresholds and mapping units, `other` on). Cities: the labelled cities "
                  f"{', '.join(cities)}, never trained on; pixel precision, recall and F1 from counts summed over "
                  f"them, and object recall for true changes of at least 0.5 ha (found when a quarter of it is "
                  f"flagged). Implants: real surfaces pasted into same-image no-change pairs of "
                  f"{', '.join(pairs)} (never trained on), recall at 0.5 ha over all surfaces and for the worst "
                  f"one, and false alarms outside the implants. The floor is change vector analysis (Otsu on the "
                  f"magnitude of the band differences, per pair).", "",
                  markdown_table(real_change_summary(ev).to_dict(orient="records"))]
    if ev.implants is not None:
        parts += ["", "Implant recall per surface (`sim_spectra`: the simulator's measured spectra):", "",
                  markdown_table(ev.implants.to_dict(orient="records"))]
    parts += ["", f"**Simulated held-out scenes**, {ev.seeds} scenes (seeds 3000+, `difficulty: held_out`), whole "
              "pipeline, permits applied. P/R: object-level precision and recall of leads at the mapping unit; px "
              "F1 and IoU: detected change polygons against planted changes, pixel by pixel; `other` leads on "
              "these scenes are false leads.", "", side_by_side(ev.held_out)]
    if ev.demo is not None:
        parts += ["", f"The demo's own scene and settings, seeds {', '.join(map(str, DEMO_SEEDS))} (the demo is seed "
                  "7):", "", side_by_side(ev.demo)]
    if ev.real is not None and len(ev.real):
        wide = ev.real.pivot_table(index=["pair", "km2"], columns="detector",
                                   values="flagged_km2_per_100km2").reset_index()
        wide.columns = [str(c) for c in wide.columns]
        parts += ["", "Area flagged on the true pairs never trained on, km² per 100 km² of seen ground, no zones "
                  "and no permits: real change and false alarms together, an upper bound on false alarms.", "",
                  markdown_table(wide.to_dict(orient="records"))]
    parts.append(END)
    return "\n".join(parts)


def record_in_card(card_path: Path, ev: Evaluation, detector: str) -> None:
    """Put one detector's figures into its model card (the weights hash is unchanged)."""
    card = ModelCard.read(card_path)
    metrics = dict(card.metrics)
    cols = ["category", "expected", "found", "leads", "recall", "precision", "object_f1", "pixel_f1", "pixel_iou"]
    metrics["held_out"] = json.loads(ev.held_out[ev.held_out.detector == detector][cols].to_json(orient="records"))
    for key, table in (("held_out_cities", ev.cities), ("implants_in_unseen_pairs", ev.implants),
                       ("real_pairs_flagged_km2_per_100km2", ev.real)):
        if table is not None and len(table):
            metrics[key] = json.loads(table[table.detector == detector].to_json(orient="records"))
    if ev.cities is not None:
        metrics["held_out_cities_cva_floor"] = json.loads(ev.cities[ev.cities.detector == CVA].to_json(
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
                       real_pairs: Path | None = None, labelled_pairs: Path | None = None, write_docs: bool = False,
                       progress: bool = True, docs: Path = Path("docs/models.md")) -> Evaluation:
    """Every measurement side by side, printed, kept as JSON in `out`, and with `write_docs` written
    into docs/models.md and each model's card."""
    out.mkdir(parents=True, exist_ok=True)
    seeds = tuple(range(HELD_OUT_SEEDS[0], HELD_OUT_SEEDS[0] + scenes))
    ev = Evaluation(evaluate_held_out(detectors, out / "scenes", seeds, progress=progress), len(seeds))
    write_json(ev.held_out, out / "held_out.json")
    print(ev.held_out[SHOWN].to_string(index=False))
    if demo_seeds:
        ev.demo = evaluate_held_out(detectors, out / "demo_scenes", DEMO_SEEDS, progress, difficulty="demo")
        write_json(ev.demo, out / "demo_scenes.json")
        print(f"\n{ev.demo[SHOWN].to_string(index=False)}")
    held_cities = CITY_FOLDS[SHIPPED_FOLD][1]
    cities = load_labelled_pairs(labelled_pairs, held_cities) if labelled_pairs else {}
    if labelled_pairs:
        ev.cities = labelled_cities(detectors, Path(labelled_pairs), cities, out / "cities", progress)
        write_json(ev.cities, out / "cities.json")
        print(f"\n{ev.cities.to_string(index=False)}")
    if real_pairs:
        unseen = dict(zip(HELD_OUT_PAIRS, load_unlabelled(Path(real_pairs), HELD_OUT_PAIRS), strict=True))
        bank = evaluation_bank(unseen, list(cities.values()))
        ev.implants = implanted_pairs(detectors, Path(real_pairs), unseen, bank, out / "implants", progress)
        ev.real = flagged_on_real_pairs(detectors, Path(real_pairs), out / "real_pairs", HELD_OUT_PAIRS, progress)
        write_json(ev.implants, out / "implants.json")
        write_json(ev.real, out / "real_pairs.json")
        print(f"\n{ev.implants.to_string(index=False)}\n\n{ev.real.to_string(index=False)}")
    if ev.cities is not None or ev.implants is not None:
        print(f"\n{real_change_summary(ev).to_string(index=False)}")
    print(f"\ntables written to {out}")
    if write_docs:
        write_section(docs, report(ev, held_cities, HELD_OUT_PAIRS), BEGIN, END)
        for name in detectors:
            if name != "baseline":
                record_in_card(resolve_card(name), ev, name)
        print(f"{docs} and the model cards updated")
    return ev
