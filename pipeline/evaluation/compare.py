"""Choosing the architecture by measurement: each candidate trained on the same budget and data,
then scored on the validation scenes and timed on the CPU (and the GPU when there is one)."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from detectors import DEFAULT_MODEL
from detectors.categories import CLASSIFIED_IDS
from detectors.features import FEATURE_NAMES
from detectors.learned import resolve_card
from detectors.model_card import ModelCard
from pipeline.evaluation.real_change import labelled_cities
from pipeline.sources.labelled import load_labelled_pairs
from pipeline.training.splits import CITY_FOLDS, SHIPPED_FOLD
from pipeline.training.train import TrainingRecipe, train

#: The two light decoders on one encoder; a U-Net on ResNet-18 was measured before and dropped:
#: 48 MB of weights (over the 30 MB aim) and 1.7 times slower per tile, for no better score.
CANDIDATES: dict[str, dict] = {
    "unet-regnetx002": {"arch": "Unet", "encoder": "tu-regnetx_002"},
    "fpn-regnetx002": {"arch": "FPN", "encoder": "tu-regnetx_002"},
}


def time_forward(card_path: Path, device: str = "cpu", batch: int = 8, tile: int = 256, repeats: int = 5) -> float:
    """Median milliseconds per tile of a forward pass over a batch of `tile`² tiles."""
    from detectors.learned import SegmentationDetector

    detector = SegmentationDetector.load(card_path, device=device)
    x = np.random.default_rng(0).standard_normal((batch, len(FEATURE_NAMES), tile, tile)).astype(np.float32)
    detector.probabilities(x)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        detector.probabilities(x)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times) / batch


def trained_by(card_path: Path, recipe: TrainingRecipe, real_pairs: Path | None, labelled_pairs: Path | None) -> bool:
    """Whether a card's weights came from `recipe` (its name aside) on the same kinds of data: then
    they are that candidate, and measuring them saves a training of most of an hour on a CPU."""
    training = ModelCard.read(card_path).training
    done = dict(training.get("recipe", {}))
    wanted = json.loads(json.dumps(asdict(recipe)))  # tuples as the card's JSON lists
    same_data = (bool(training.get("real_pairs")) == (real_pairs is not None)
                 and bool(training.get("labelled_cities")) == (labelled_pairs is not None))
    return bool(done) and same_data and {**done, "name": None} == {**wanted, "name": None}


def compare(data: Path, real_pairs: Path | None, labelled_pairs: Path | None, steps: int | None, out: Path,
            retrain: bool = True) -> list[dict]:
    """Train every candidate with the shipped recipe, changing only the architecture (and `steps`
    if given), reusing the shipped weights for the candidate their recipe trained, and a candidate
    already trained in `out` unless `retrain`; return one row of
    measurements per candidate:
    real change on the labelled cities held out of training (when given), simulated validation
    scores, size and CPU time. Timings are taken after all training, on a quiet machine."""
    cards, shipped = [], resolve_card(DEFAULT_MODEL)
    for name, arch in CANDIDATES.items():
        recipe = replace(TrainingRecipe(), name=f"candidate-{name}", **arch, **({"steps": steps} if steps else {}))
        card = out / f"{recipe.name}.json"
        if trained_by(shipped, recipe, real_pairs, labelled_pairs):
            card = shipped
        elif retrain or not card.exists():
            card = train(recipe, data, real_pairs, labelled_pairs, out=out)
        cards.append((name, card))
    held = CITY_FOLDS[SHIPPED_FOLD][1]
    rows = []
    for name, card_path in cards:
        card = ModelCard.read(card_path)
        f1 = {c: m["field_f1"] for c, m in card.metrics["validation_objects"].items() if c in CLASSIFIED_IDS}
        row = {"candidate": name, "steps": card.training.get("steps_done"),
               "params_M": round(_params(card_path) / 1e6, 2),
               "weights_MB": round(card.weights_path(card_path).stat().st_size / 1e6, 1),
               "cpu_ms_per_tile": round(time_forward(card_path), 1),
               "val_field_f1_mean": round(float(np.mean(list(f1.values()))), 3)}
        if labelled_pairs:
            pairs = load_labelled_pairs(labelled_pairs, held)
            c = labelled_cities([str(card_path)], labelled_pairs, pairs, out / "cities" / name, progress=False).iloc[-1]
            row.update({"held-out cities px F1": c.pixel_f1, "obj R ≥0.5 ha": c.object_recall})
        rows.append(row)
    return rows


def _params(card_path: Path) -> int:
    from safetensors import safe_open

    card = ModelCard.read(card_path)
    with safe_open(str(card.weights_path(card_path)), framework="pt") as f:
        return sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())


BEGIN, END = "<!-- models:comparison:begin -->", "<!-- models:comparison:end -->"


def main() -> None:
    import argparse
    from datetime import UTC, datetime

    from pipeline.evaluation.report import machine, markdown_table, write_section

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("build/training"))
    parser.add_argument("--real-pairs", type=Path)
    parser.add_argument("--labelled-pairs", type=Path)
    parser.add_argument("--steps", type=int, help="training steps (default: the shipped recipe's)")
    parser.add_argument("--out", type=Path, default=Path("docs/models.md"))
    parser.add_argument("--retrain", action="store_true", help="train again the candidates already in the data folder")
    args = parser.parse_args()
    rows = compare(args.data, args.real_pairs, args.labelled_pairs, args.steps, args.data / "candidates",
                   retrain=args.retrain)
    table = markdown_table(rows)
    section = (f"{BEGIN}\nMeasured {datetime.now(UTC).date().isoformat()} on {machine()}: each candidate trained "
               f"with the shipped recipe on the same data, only the architecture differs; held-out cities as in "
               f"`make evaluate` (`detect` defaults); validation field F1 (object recall against pixel precision, "
               f"the calibration score) is the mean over the categories on the simulated validation scenes; CPU "
               f"time is the median forward pass per 256 x 256 tile in batches of 8.\n\n"
               f"{table}\n{END}")
    write_section(args.out, section, BEGIN, END)
    print(section)


if __name__ == "__main__":
    main()
