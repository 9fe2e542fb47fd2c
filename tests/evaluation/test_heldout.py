"""Held-out evaluation: harder unseen scenes through the whole pipeline, and the ratios it reports."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.evaluation.heldout import evaluate_held_out, summarise


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


@pytest.mark.slow
def test_a_held_out_scene_is_harder_and_scored_end_to_end(tmp_path: Path) -> None:
    table = evaluate_held_out(["baseline"], tmp_path, seeds=(3000,), progress=False)
    made = json.loads((tmp_path / "3000" / "inputs" / "simulation.json").read_text())
    assert made["seed"] == 3000 and made["settings"]["cloud_cover"] == [0.15, 0.35]
    assert set(table.category) >= {"mine", "forest", "all"}
    total = table.set_index("category").loc["all"]
    assert total.expected > 20 and 0 < total.recall <= 1 and 0 < total.precision <= 1
    assert 0 < total.pixel_f1 <= 1 and total.pixel_iou <= total.pixel_f1
