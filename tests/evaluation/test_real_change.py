"""Real change: the change-vector-analysis floor, object scores, and detectors run as `detect` runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from detectors import DEFAULT_MODEL
from detectors.learned import resolve_card
from pipeline.evaluation.objects import count
from pipeline.evaluation.real_change import CVA, implanted_pairs, labelled_cities, otsu_threshold
from pipeline.simulator.real_texture import TextureBank
from pipeline.sources.labelled import load_labelled_pairs
from pipeline.training.real_chips import load_unlabelled
from tests.conftest import ORIGIN, write_s2
from tests.training.test_real_chips import BARE, VEG, _textured


def test_otsu_splits_two_modes() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 5000), rng.normal(8, 1, 2000)])
    assert 2.5 < otsu_threshold(x) < 5.5


def test_object_recall_needs_a_quarter_of_the_object() -> None:
    change = np.zeros((40, 40), bool)
    change[5:15, 5:15] = True  # 100 px: counted
    change[30:33, 30:33] = True  # 9 px: below 0.5 ha
    flagged = np.zeros_like(change)
    flagged[5:8, 5:15] = True  # 30 % of it
    c = count(flagged, change, 50, 0.25)
    assert (c.objects, c.found, c.tp, c.fn, c.fp) == (1, 1, 30, 79, 0)
    flagged[:] = False
    flagged[5:6, 5:15] = True  # 10 %: not found
    assert count(flagged, change, 50, 0.25).found == 0


def _city(folder: Path, rng: np.random.Generator) -> Path:
    city = folder / "steppe"
    city.mkdir(parents=True)
    before = _textured(VEG, rng)
    after = before * rng.uniform(0.98, 1.02, before.shape).astype(np.float32)
    after[:, 40:80, 30:90] = _textured(BARE, rng)[:, 40:80, 30:90]  # 0.24 ha of new bare ground
    write_s2(city / "before.tif", before, "2017-07-10", offset=0)
    write_s2(city / "after.tif", after, "2018-07-12", offset=0)
    change = np.zeros(before.shape[1:], np.uint8)
    change[40:80, 30:90] = 1
    with rasterio.open(city / "change.tif", "w", driver="GTiff", width=128, height=128, count=1, dtype="uint8",
                       crs="EPSG:32650", transform=ORIGIN) as dst:
        dst.write(change, 1)
    return city


def test_labelled_cities_score_detect_and_the_floor(tmp_path: Path) -> None:
    _city(tmp_path / "cities", np.random.default_rng(0))
    pairs = load_labelled_pairs(tmp_path / "cities", ("steppe",))
    table = labelled_cities(["baseline"], tmp_path / "cities", pairs, tmp_path / "out", progress=False)
    assert set(table.detector) == {"baseline", CVA}
    for row in table.itertuples():
        assert row.objects == 1 and row.found == 1, row  # both see a plain bright change on steppe
    assert (tmp_path / "out" / "steppe" / "baseline" / "changes.gpkg").exists()  # it ran as `detect`


def test_implants_into_an_unseen_pair_are_counted_per_surface(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    city = _city(tmp_path / "pairs", rng)
    bank = TextureBank.build([(_textured(BARE, rng), np.ones((128, 128), bool))], [], rng)
    pairs = dict(zip(("steppe",), load_unlabelled(city.parent, ("steppe",)), strict=True))
    table = implanted_pairs(["baseline"], city.parent, pairs, bank, tmp_path / "out", progress=False)
    assert set(table.detector) == {"baseline", CVA}
    row = table[table.detector == "baseline"].iloc[0]
    assert 0.0 <= row["all"] <= 1.0 and np.isfinite(row["false_alarm_ha_per_km2"])
    assert (tmp_path / "out" / "steppe" / "after.tif").exists()


def test_a_model_given_by_its_card_path_is_run_into_a_folder_of_its_name(tmp_path: Path) -> None:
    card = resolve_card(DEFAULT_MODEL).resolve()  # an absolute path, as `make compare-models` gives
    _city(tmp_path / "cities", np.random.default_rng(0))
    pairs = load_labelled_pairs(tmp_path / "cities", ("steppe",))
    table = labelled_cities([str(card)], tmp_path / "cities", pairs, tmp_path / "out", progress=False)
    assert set(table.detector) == {str(card), CVA}
    assert (tmp_path / "out" / "steppe" / card.stem / "changes.gpkg").exists()
