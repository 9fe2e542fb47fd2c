"""Real pairs: changes implanted into a pair never trained on, counted and searched."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_implants_into_a_real_like_pair_are_counted_and_searched(tmp_path: Path) -> None:
    import numpy as np

    from pipeline.evaluation.real_pairs import implanted_recall
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
