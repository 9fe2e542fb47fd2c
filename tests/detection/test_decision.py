"""One change, one category: the decision rule groups touching changed pixels before naming them."""

import numpy as np

from detectors.categories import CATEGORY_IDS, OTHER_ID
from pipeline.detection.decision import decide, pixel_labels

CATS = CATEGORY_IDS
TL, LAKE, MINE, OTHER = (CATS.index(c) for c in ("temporary_land", "lake", "mine", OTHER_ID))
THRESHOLDS = dict.fromkeys(CATS, 0.5)


def _probs(shape=(60, 60)) -> np.ndarray:
    return np.zeros((len(CATS), *shape), dtype=np.float32)


def _change(rim: tuple[slice, slice], category: int, core: tuple[slice, slice]) -> np.ndarray:
    """A change only the any-change band sees over `rim`, read as `category` over `core`."""
    probs = _probs()
    probs[(OTHER, *rim)] = 0.8
    probs[(category, *core)] = 0.9
    return probs


def test_a_core_and_its_rim_are_one_change_of_the_core_category():
    # a 6 x 6 px temporary-land core (36 px: above its 20 px unit) in a 12 x 12 px change whose rim
    # only the any-change band sees; pixel by pixel the rim (108 px) would be a separate `other`
    probs = _change(np.s_[10:22, 10:22], TL, np.s_[13:19, 13:19])
    assert set(np.unique(pixel_labels(probs, CATS, THRESHOLDS))) == {0, TL + 1, OTHER + 1}
    labels = decide(probs, CATS, THRESHOLDS)
    assert (labels[10:22, 10:22] == TL + 1).all()
    assert (labels == TL + 1).sum() == 144


def test_a_category_short_of_its_unit_is_not_made_up_to_it_by_other_pixels():
    # 12 px of lake (unit 15 px) inside 60 px of `other`: the change is `other`, not a lake lead
    probs = _change(np.s_[20:26, 20:30], LAKE, np.s_[22:24, 22:28])
    labels = decide(probs, CATS, THRESHOLDS)
    assert (labels[20:26, 20:30] == OTHER + 1).all()
    assert not (labels == LAKE + 1).any()


def test_a_category_that_holds_too_small_a_share_does_not_name_the_change():
    # 30 px of mine (its unit) in a change of 400 px: under a quarter, so it is `other`
    probs = _change(np.s_[10:30, 10:30], MINE, np.s_[10:15, 10:16])
    labels = decide(probs, CATS, THRESHOLDS)
    assert (labels[10:30, 10:30] == OTHER + 1).all()
    probs[MINE, 10:20, 10:20] = 0.9  # 100 px of 400: the change is a mine
    assert (decide(probs, CATS, THRESHOLDS)[10:30, 10:30] == MINE + 1).all()


def test_the_majority_names_a_change_of_several_categories():
    probs = _probs()
    probs[MINE, 10:20, 10:20] = 0.9  # 100 px
    probs[TL, 20:26, 10:20] = 0.9  # 60 px touching it
    labels = decide(probs, CATS, THRESHOLDS)
    assert (labels[10:26, 10:20] == MINE + 1).all()


def test_unseen_pixels_cast_no_vote():
    # the mine's pixels lie where the pair was not seen: what is left is `other`
    probs = _change(np.s_[10:30, 10:30], MINE, np.s_[10:30, 10:20])
    seen = np.ones((60, 60), dtype=bool)
    assert (decide(probs, CATS, THRESHOLDS, seen)[10:30, 10:30] == MINE + 1).all()
    seen[:, :20] = False
    labels = decide(probs, CATS, THRESHOLDS, seen)
    assert not labels[~seen].any()
    assert (labels[10:30, 20:30] == OTHER + 1).all()


def test_mapping_units_follow_the_pixel_size():
    # 14 px of lake in a change of 50 px hold its 1500 m2 unit at 20 m pixels (5600 m2), not at 10 m (1400 m2)
    probs = _change(np.s_[20:25, 20:30], LAKE, np.s_[22:24, 22:29])
    assert not (decide(probs, CATS, THRESHOLDS, pixel_m=10.0) == LAKE + 1).any()
    assert (decide(probs, CATS, THRESHOLDS, pixel_m=20.0)[20:25, 20:30] == LAKE + 1).all()


def test_without_other_pixels_a_change_keeps_its_pixels_labels():
    # where `other` is not reported (its band is zero), a change whose majority falls short is
    # left as its pixels were, each piece to be held to its own unit, and never becomes `other`
    probs = _probs()
    probs[LAKE, 20:23, 20:24] = 0.9  # 12 px of lake
    probs[TL, 23:25, 20:24] = 0.9  # 8 px of temporary land below it
    labels = decide(probs, CATS, THRESHOLDS)
    assert np.array_equal(labels, pixel_labels(probs, CATS, THRESHOLDS))
    assert not (labels == OTHER + 1).any()
