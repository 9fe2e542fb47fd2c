"""Decision thresholds chosen under the rule they are applied with, at the level investigators see.

Thresholds are chosen on validation scenes (never held-out ones) and, for `other`, on the
training cities of the labelled real pairs where there are any, through `pipeline.detection.decision.decide`, the
rule runs and `detect` apply, and scored on objects at each category's mapping unit rather than
on pixels: a threshold that wins pixels by filling in big changes while losing small ones is not
what a field team wants. The score is `Counts.field_f1` (changes found against ground walked for
nothing). Scores within TIE of the best are ties, and the highest threshold among them wins: on
the flat plateaus of a well-separated category a lower threshold gains nothing on the validation
scenes and only lets fringes through elsewhere (lake 0.5 turned the demo's lake-level fringes
into lake leads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.categories import CATEGORY_IDS, CLASSIFIED_IDS, OTHER_ID, get_category
from detectors.features import CONTEXT_ZONES
from detectors.interface import Detector
from pipeline.detection.decision import decide
from pipeline.detection.inference import predict_arrays
from pipeline.evaluation.objects import Counts, count
from pipeline.sources.labelled import LabelledPair
from pipeline.training.scenes import SceneArrays

GRID: tuple[float, ...] = tuple(np.round(np.arange(0.1, 0.91, 0.1), 2).tolist())
#: Real change counts as found when a quarter of it is flagged (its outline at 10 m is rough).
REAL_COVER = 0.25
#: The object size of real change that is scored: 0.5 ha at 10 m.
REAL_MIN_PX = 50
#: Scores this close to the best are ties.
TIE = 0.005
#: Rounds of choosing each threshold given the others: a change takes one category, so one
#: category's threshold moves what the others win (temporary land chosen first, beside the
#: others at 0.5, went to 0.1; beside their chosen thresholds it is best at 0.3-0.5).
PASSES = 3


@dataclass
class Judged:
    """Probabilities of one scene or pair and its truth: `labels` 0 = no change, else 1 + index in
    CLASSIFIED_IDS; `category_known` False where only "changed or not" is known (real pairs)."""

    probs: np.ndarray  # (len(CATEGORY_IDS), H, W)
    labels: np.ndarray
    valid: np.ndarray
    category_known: bool = True
    pixel_m: float = 10.0


def scene_zones(scene: SceneArrays) -> dict:
    """The context zones of a cached scene as the pipeline hands them to a detector."""
    return {z: scene.zones[j].astype(bool) for j, z in enumerate(CONTEXT_ZONES)}


def judge_scene(detector: Detector, scene: SceneArrays) -> Judged:
    """Whole-scene probabilities of a simulated scene, tiled as in a run, with its planted truth."""
    probs, _ = predict_arrays(scene.before, scene.after, scene.valid, scene_zones(scene), detector)
    return Judged(probs, scene.labels, scene.valid)


def judge_pair(detector: Detector, pair: LabelledPair) -> Judged:
    """Probabilities of a labelled real pair with no zones, as `detect` sees it, with its change label."""
    probs, _ = predict_arrays(pair.before, pair.after, pair.valid, {}, detector)
    return Judged(probs, pair.change, pair.valid, category_known=False)


def category_counts(items: Sequence[Judged], thresholds: dict[str, float], category: str) -> Counts:
    """One category's counts under the decision rule, at its mapping unit, over scenes whose categories are known."""
    k = CATEGORY_IDS.index(category) + 1
    total = Counts()
    for item in items:
        if item.category_known:
            labels = decide(item.probs, CATEGORY_IDS, thresholds, item.valid, item.pixel_m)
            total += count(labels == k, item.labels == k, get_category(category).unit_px(item.pixel_m),
                           valid=item.valid)
    return total


def change_counts(items: Sequence[Judged], thresholds: dict[str, float]) -> Counts:
    """Any-change counts (any category, `other` included) at 0.5 ha, over every scene and pair."""
    total = Counts()
    for item in items:
        flagged = decide(item.probs, CATEGORY_IDS, thresholds, item.valid, item.pixel_m) > 0
        cover = 0.0 if item.category_known else REAL_COVER
        total += count(flagged, item.labels > 0, REAL_MIN_PX, cover, item.valid)
    return total


def _best(counts: list[Counts]) -> float:
    """The highest threshold of GRID whose score is within TIE of the best."""
    scores = [c.field_f1 for c in counts]
    return max(t for t, s in zip(GRID, scores, strict=True) if s >= max(scores) - TIE)


def calibrate(items: Sequence[Judged]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Thresholds per category that maximise `field_f1` under `decide`, one category at a time
    (each given the others' current thresholds), then the `other` threshold that maximises it for
    any change, in up to PASSES rounds until none moves; and the scores at the chosen thresholds.

    `other` is chosen on the real pairs alone where there are any: it is what real change without
    a category becomes, and the simulated scenes' objects, hundreds against a few dozen real ones,
    would otherwise pick it for the simulator (they pulled it to 0.7, where half the real change
    of the training cities went unflagged).
    """
    thresholds = dict.fromkeys(CATEGORY_IDS, 0.5)
    real = [item for item in items if not item.category_known] or list(items)
    for _ in range(PASSES):
        before = dict(thresholds)
        for cat in CLASSIFIED_IDS:
            thresholds[cat] = _best([category_counts(items, {**thresholds, cat: t}, cat) for t in GRID])
        thresholds[OTHER_ID] = _best([change_counts(real, {**thresholds, OTHER_ID: t}) for t in GRID])
        if thresholds == before:
            break
    metrics = {cat: category_counts(items, thresholds, cat).summary() for cat in CLASSIFIED_IDS}
    metrics["any_change"] = change_counts(items, thresholds).summary()
    return thresholds, metrics


def calibrate_detector(detector: Detector, validation: Sequence[SceneArrays], cities: Sequence[LabelledPair],
                       progress: bool = True) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """`calibrate` on a detector's probabilities of the validation scenes and the training cities."""
    from tqdm import tqdm

    judged = [judge_scene(detector, s) for s in tqdm(validation, desc="calibrating", disable=not progress)]
    judged += [judge_pair(detector, c) for c in cities]
    return calibrate(judged)
