"""Held-out evaluation: harder unseen scenes through the whole pipeline, and the ratios it reports."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.heldout import evaluate_held_out, summarise


def test_summary_ratios_come_from_summed_counts() -> None:
    per_scene = pd.DataFrame([
        {"detector": "d", "seed": 1, "category": "mine", "expected": 4, "found": 2, "leads": 2, "true_leads": 2,
         "flagged_permitted": 0, "tp_px": 30, "fp_px": 10, "fn_px": 20},
        {"detector": "d", "seed": 2, "category": "mine", "expected": 4, "found": 4, "leads": 6, "true_leads": 4,
         "flagged_permitted": 1, "tp_px": 50, "fp_px": 0, "fn_px": 10},
    ])
    row = summarise(per_scene).set_index("category").loc["mine"]
    assert row.recall == pytest.approx(0.75) and row.precision == pytest.approx(0.75)
    assert row.object_f1 == pytest.approx(0.75)
    assert row.pixel_f1 == pytest.approx(round(160 / 200, 3))
    assert row.pixel_iou == pytest.approx(round(80 / 120, 3))


def test_a_held_out_scene_is_harder_and_scored_end_to_end(tmp_path: Path) -> None:
    table = evaluate_held_out(["baseline"], tmp_path, seeds=(3000,), progress=False)
    made = json.loads((tmp_path / "3000" / "inputs" / "simulation.json").read_text())
    assert made["seed"] == 3000 and made["settings"]["cloud_cover"] == [0.15, 0.35]
    assert set(table.category) >= {"mine", "forest", "all"}
    total = table.set_index("category").loc["all"]
    assert total.expected > 20 and 0 < total.recall <= 1 and 0 < total.precision <= 1
    assert 0 < total.pixel_f1 <= 1 and total.pixel_iou <= total.pixel_f1


def test_implants_into_a_real_like_pair_are_counted_and_searched(tmp_path: Path) -> None:
    import numpy as np

    from pipeline.heldout import implanted_recall
    from tests.conftest import write_s2

    rng = np.random.default_rng(0)
    veg = np.array([0.04, 0.07, 0.06, 0.30, 0.20, 0.11])[:, None, None] * rng.uniform(0.95, 1.05, (6, 160, 160))
    pair = tmp_path / "pairs" / "steppe"
    pair.mkdir(parents=True)
    write_s2(pair / "before.tif", veg, "2017-07-10", offset=0)
    write_s2(pair / "after.tif", veg * rng.uniform(0.98, 1.02, veg.shape), "2018-07-12", offset=0)
    table = implanted_recall(["eoleads-s2-unet"], tmp_path / "pairs", tmp_path / "out", ("steppe",), count=6)
    row = table.iloc[0]
    assert row.implanted >= 2 and 1 <= row.found <= row.implanted  # the model finds some on a plain background
    assert (tmp_path / "out" / "steppe" / "after_implanted.tif").exists()
    assert row.flagged_outside_km2_per_100km2 < 5  # a quiet background stays quiet
