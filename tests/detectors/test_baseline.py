import numpy as np
import pytest

from detectors.bands import REFLECTANCE_BANDS
from detectors.baseline import SpectralBaseline
from detectors.categories import CATEGORY_IDS, Zone
from pipeline.detection.decision import decide
from pipeline.detection.inference import predict_scene
from pipeline.detection.tiling import Tiling
from pipeline.errors import InputError
from pipeline.simulator.spectra import surface_spectra
from pipeline.sources.scene import Composite, ReadGrid, Scene


def _pixel(name: str) -> np.ndarray:
    return np.median(surface_spectra(name), axis=0)


def _predict(before: np.ndarray, after: np.ndarray, zones: dict[Zone, bool],
             active: list[str] | None = None) -> dict[str, float]:
    b = np.broadcast_to(before[None, :, None, None], (1, 6, 4, 4)).astype(np.float32)
    a = np.broadcast_to(after[None, :, None, None], (1, 6, 4, 4)).astype(np.float32)
    z = {zone: np.full((1, 4, 4), on) for zone, on in zones.items()}
    p = SpectralBaseline(active).predict(b, a, np.ones((1, 4, 4), dtype=bool), z)
    return dict(zip(CATEGORY_IDS, p[0, :, 0, 0].tolist(), strict=True))


ALL_ZONES = dict.fromkeys([Zone.FOREST, Zone.GRASSLAND, Zone.BLACK_SOIL, Zone.RIVER, Zone.LAKE, Zone.WETLAND,
                           Zone.MINING_DISTRICT], False)


def _top(p: dict[str, float]) -> str | None:
    """The category the pipeline would assign, precedence included."""
    probs = np.array([p[c] for c in CATEGORY_IDS], dtype=np.float32)[:, None, None]
    label = int(decide(probs, CATEGORY_IDS, SpectralBaseline.thresholds)[0, 0])
    return CATEGORY_IDS[label - 1] if label else None


def test_forest_clearing_is_forest_only_inside_the_forest_zone():
    clearing = 0.45 * _pixel("dry_grass") + 0.35 * _pixel("steppe_soil") + 0.2 * _pixel("forest")
    inside = _predict(_pixel("forest"), clearing, {**ALL_ZONES, Zone.FOREST: True})
    outside = _predict(_pixel("forest"), clearing, ALL_ZONES)
    assert _top(inside) == "forest"
    assert outside["forest"] == 0.0


def test_burn_scar_is_not_forest_clearing():
    assert _predict(_pixel("forest"), _pixel("char"), {**ALL_ZONES, Zone.FOREST: True})["forest"] < 0.5


@pytest.mark.parametrize(("before", "after", "zone", "expected"), [
    ("grass_green", "gravel_yard", None, "temporary_land"),
    ("grass_green", "plough", Zone.GRASSLAND, "grassland"),
    ("crop", "subsoil", Zone.BLACK_SOIL, "black_soil"),
    ("grass_green", "rock_pit", None, "mine"),
    ("grass_green", "fill", Zone.LAKE, "lake"),
    ("grass_green", "grass_green", Zone.GRASSLAND, None),
    ("crop", "black_soil", Zone.BLACK_SOIL, None),  # fallow is not damage
])
def test_each_rule_on_measured_spectra(before, after, zone, expected):
    zones = {**ALL_ZONES, **({zone: True} if zone else {})}
    assert _top(_predict(_pixel(before), _pixel(after), zones)) == expected


def test_coal_counts_only_in_mining_districts():
    steppe, coal = _pixel("grass_green") * 0.5 + _pixel("steppe_soil") * 0.5, _pixel("coal")
    assert _top(_predict(steppe, coal, {**ALL_ZONES, Zone.MINING_DISTRICT: True})) == "mine"
    assert _top(_predict(steppe, coal, ALL_ZONES)) is None


def test_scene_with_other_bands_is_refused():
    grid = ReadGrid("EPSG:32650", None, 8, 8)
    comp = Composite(np.zeros((6, 8, 8), np.float32), np.ones((8, 8), bool), [], np.ones((8, 8), np.uint8))
    scene = Scene(grid, ("B02", "B03", "B04", "B05", "B11", "B12"), comp, comp)
    with pytest.raises(InputError, match="reads bands"):
        predict_scene(scene, {}, SpectralBaseline(), Tiling(8, 0, 1))
    assert SpectralBaseline.bands == REFLECTANCE_BANDS


def test_a_category_left_out_does_not_overrule_the_others():
    before, after = _pixel("grass_green"), _pixel("gravel_yard")
    zones = {**ALL_ZONES, Zone.RIVER: True}
    assert _top(_predict(before, after, zones)) == "river"
    without_river = _predict(before, after, zones, active=[c for c in CATEGORY_IDS if c != "river"])
    assert without_river["river"] == 0.0
    assert _top(without_river) == "temporary_land"
