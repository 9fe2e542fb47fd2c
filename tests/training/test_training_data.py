"""Training data: simulated scenes through the run's own source, real-pair implants, balanced chips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.categories import CATEGORY_IDS
from detectors.features import CONTEXT_ZONES, UNKNOWN_ZONE
from pipeline.simulator.implants import implant
from pipeline.simulator.real_texture import TextureBank
from pipeline.training.chips import ChipSampler
from pipeline.training.real_chips import Mixture, RealChangeSampler
from pipeline.training.scenes import SceneArrays, make_scene, settings_for
from tests.detectors.test_learned import tiny_scene


@pytest.mark.slow
def test_a_training_scene_holds_composites_labels_and_zones(tmp_path: Path) -> None:
    path = make_scene(tmp_path / "s", 1000, settings_for(1000))
    scene = SceneArrays.load(path)
    assert scene.before.shape[0] == 6 and scene.before.shape[1:] == scene.labels.shape
    assert scene.valid.mean() > 0.8
    assert np.isfinite(scene.after[:, scene.valid]).all()
    present = set(np.unique(scene.labels)) - {0}
    assert len(present) >= 6  # most categories are planted in every scene
    forest = CONTEXT_ZONES.index(next(z for z in CONTEXT_ZONES if z.value == "forest"))
    on_forest = scene.labels == CATEGORY_IDS.index("forest") + 1
    assert scene.zones[forest][on_forest].mean() > 0.9  # forest changes lie in the forest zone
    before_ndvi = (scene.before[3] - scene.before[2]) / (scene.before[3] + scene.before[2])
    assert np.nanmean(before_ndvi[on_forest]) > 0.6  # the labels sit on the imagery, not beside it
    assert make_scene(tmp_path / "s", 1000, settings_for(1000)) == path  # cached


def test_implants_start_where_their_category_can_and_carry_their_zone() -> None:
    rng = np.random.default_rng(3)
    veg = np.array([0.03, 0.06, 0.04, 0.40, 0.18, 0.09], dtype=np.float32)[:, None, None]
    before = veg * rng.uniform(0.9, 1.1, (1, 96, 96)).astype(np.float32)
    after = before * 1.01
    out, labels, zones = implant(before, after, rng, count=3)
    assert labels.any()
    changed = np.abs(out - after).max(axis=0) > 0.01
    assert changed[labels > 0].mean() > 0.95  # labelled pixels were changed
    for k in set(np.unique(labels)) - {0}:
        cat = CATEGORY_IDS[k - 1]
        assert cat not in ("river", "lake")  # no water in this chip: nothing can start at a shore
        zone = {"black_soil": "black_soil", "grassland": "grassland"}.get(cat)
        if zone:
            j = [z.value for z in CONTEXT_ZONES].index(zone)
            assert (zones[j][labels == k] == 1).all()
    assert (zones == UNKNOWN_ZONE).any()


def test_chips_are_balanced_over_categories() -> None:
    rng = np.random.default_rng(0)
    sampler = ChipSampler([tiny_scene(rng) for _ in range(4)], 48, np.random.default_rng(1))
    seen = {k: 0 for k in (1, 8)}
    for _ in range(120):
        chip = sampler.simulated()
        for k in seen:
            seen[k] += int((chip.labels == k).any())
    assert min(seen.values()) > 30  # both planted categories turn up in many chips
    mixed = RealChangeSampler(sampler, [], [], TextureBank.build([], [], rng), 48, np.random.default_rng(2),
                              Mixture())
    x, y = mixed.batch(4)  # with only simulated scenes, every chip is simulated
    assert x.shape == (4, 38, 48, 48) and y.shape == (4, 48, 48) and y.dtype == np.int64
