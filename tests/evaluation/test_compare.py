from dataclasses import replace
from pathlib import Path

from detectors import DEFAULT_MODEL
from detectors.learned import resolve_card
from pipeline.evaluation.compare import CANDIDATES, trained_by
from pipeline.training.train import TrainingRecipe

PAIRS = Path("pairs")  # only whether a folder is given matters here


def test_the_shipped_weights_stand_for_the_candidate_their_recipe_trained():
    shipped = resolve_card(DEFAULT_MODEL)
    unet = replace(TrainingRecipe(), name="candidate-unet-regnetx002", **CANDIDATES["unet-regnetx002"])
    assert trained_by(shipped, unet, PAIRS, PAIRS)


def test_another_architecture_length_or_data_is_trained_again():
    shipped = resolve_card(DEFAULT_MODEL)
    fpn = replace(TrainingRecipe(), name="candidate-fpn-regnetx002", **CANDIDATES["fpn-regnetx002"])
    unet = replace(TrainingRecipe(), name="candidate-unet-regnetx002", **CANDIDATES["unet-regnetx002"])
    assert not trained_by(shipped, fpn, PAIRS, PAIRS)
    assert not trained_by(shipped, replace(unet, steps=500), PAIRS, PAIRS)
    assert not trained_by(shipped, unet, None, PAIRS)  # the shipped weights saw real pairs
    assert not trained_by(shipped, unet, PAIRS, None)  # and labelled cities
