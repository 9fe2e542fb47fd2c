"""Thresholds are chosen under the rule runs apply, on objects at the mapping unit."""

from __future__ import annotations

import numpy as np

from detectors.categories import CATEGORY_IDS, OTHER_ID, get_category
from pipeline.detection.decision import decide
from pipeline.evaluation.calibration import Judged, calibrate
from pipeline.evaluation.objects import count

TL, FO = CATEGORY_IDS.index("temporary_land"), CATEGORY_IDS.index("forest")
OTHER = CATEGORY_IDS.index(OTHER_ID)


def _scene() -> Judged:
    """A forest clearing the model also half-reads as temporary land (0.7 > 0.6), and a bright
    false alarm that only temporary land sees (0.75)."""
    probs = np.zeros((len(CATEGORY_IDS), 120, 120), dtype=np.float32)
    labels = np.zeros((120, 120), dtype=np.uint8)
    probs[FO, 10:50, 10:50], probs[TL, 10:50, 10:50] = 0.6, 0.7
    labels[10:50, 10:50] = FO + 1
    probs[TL, 70:110, 70:110] = 0.75
    probs[OTHER] = probs[:OTHER].sum(axis=0).clip(0, 1)
    return Judged(probs, labels, np.ones((120, 120), dtype=bool))


def test_calibration_and_runs_give_the_same_decision() -> None:
    scene = _scene()
    thresholds, metrics = calibrate([scene])
    # argmax-then-threshold would give the clearing to temporary land or to nothing; the run's rule
    # (most probable category above its own threshold) lets a high temporary-land threshold hand it
    # to forest, and calibration must find that under the same rule
    assert thresholds["temporary_land"] > 0.75 and thresholds["forest"] <= 0.6
    labels = decide(scene.probs, CATEGORY_IDS, thresholds)
    assert (labels[10:50, 10:50] == FO + 1).all() and (labels[70:110, 70:110] == 0).all()
    for cat in ("forest", "temporary_land"):
        k = CATEGORY_IDS.index(cat) + 1
        again = count(labels == k, scene.labels == k, get_category(cat).unit_px(10.0), valid=scene.valid)
        assert metrics[cat]["field_f1"] == round(again.field_f1, 3)
        assert metrics[cat]["pixel_f1"] == round(again.pixel_f1, 3)


def _real() -> Judged:
    rng = np.random.default_rng(0)
    probs = np.zeros((len(CATEGORY_IDS), 100, 100), dtype=np.float32)
    change = np.zeros((100, 100), dtype=bool)
    change[20:40, 20:60] = True
    probs[OTHER] = np.where(change, 0.45, 0.25) + rng.uniform(-0.02, 0.02, (100, 100))
    return Judged(probs, change, np.ones((100, 100), dtype=bool), category_known=False)


def test_other_threshold_is_chosen_on_real_change_too() -> None:
    thresholds, metrics = calibrate([_real()])
    assert 0.25 < thresholds[OTHER_ID] <= 0.45  # low enough to find the change, above the quiet ground
    assert metrics["any_change"]["object_recall"] == 1.0


def test_simulated_scenes_do_not_pick_the_other_threshold_when_real_change_is_there() -> None:
    # the scene's false alarm (any change 0.75) alone would push `other` above 0.75, where the
    # real pair's change (0.45) is lost
    alone, _ = calibrate([_scene()])
    assert alone[OTHER_ID] > 0.75
    thresholds, metrics = calibrate([_scene(), _real()])
    assert 0.25 < thresholds[OTHER_ID] <= 0.45
    assert metrics["any_change"]["object_recall"] == 1.0
