"""Training data for real change: no-change pairs, real-texture implants, partial labels, and a
tiny training run that learns a real-texture implant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.categories import CATEGORY_IDS, OTHER_ID
from pipeline.simulator.no_change import perturb_no_change, same_image_pair
from pipeline.simulator.real_texture import SURFACES, TextureBank, paste_surface
from pipeline.training.real_chips import Mixture
from pipeline.training.targets import CHANGED_ANY, IGNORE

VEG = np.array([0.03, 0.06, 0.04, 0.35, 0.18, 0.09], dtype=np.float32)[:, None, None]
BARE = np.array([0.12, 0.15, 0.20, 0.25, 0.35, 0.30], dtype=np.float32)[:, None, None]


def _textured(spectrum: np.ndarray, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    from scipy import ndimage

    texture = 1 + 0.15 * ndimage.gaussian_filter(rng.normal(size=(size, size)), 2) * 4
    return (spectrum * texture[None]).astype(np.float32)


def test_no_change_perturbation_stays_small_and_implants_are_labelled() -> None:
    rng = np.random.default_rng(1)
    img = _textured(VEG, rng, 64)
    out = perturb_no_change(img, rng)
    assert 0.0 < np.abs(out - img).mean() < 0.03  # the same ground, seen again
    bank = TextureBank.build([(_textured(BARE, rng), np.ones((128, 128), bool))], [], rng)
    assert bank.has("bare_soil") and bank.has("road") and not bank.has("water")
    labels = np.zeros((64, 64), np.uint8)
    zones = np.full((7, 64, 64), 0.5, np.float32)
    surf = np.zeros((64, 64), np.uint8)
    ok = paste_surface(out, labels, zones, surf, "bare_soil", bank, rng, 150.0, np.zeros((64, 64), bool))
    assert ok and labels.any() and set(np.unique(surf)) == {0, SURFACES.index("bare_soil") + 1}


def test_partial_loss_is_binary_on_p_change_and_ignores() -> None:
    torch = pytest.importorskip("torch")
    from pipeline.training.train import _loss

    weights = torch.tensor([1.0] + [3.0] * 8)
    logits = torch.randn(1, 9, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), CHANGED_ANY)
    target[0, 0] = IGNORE
    loss = _loss(logits, target, weights)
    p = torch.softmax(logits, 1)
    expected = -torch.log(1 - p[0, 0, 1:]).mean()  # −log p_change on the 12 supervised pixels
    assert torch.isclose(loss, expected, atol=1e-5)
    loss.backward()
    assert float(logits.grad[0, :, 0].abs().max()) == 0.0  # the ignored row gets no gradient
    assert torch.isfinite(_loss(logits, torch.randint(0, 9, (1, 4, 4)), weights))


@pytest.mark.slow
def test_a_tiny_training_run_learns_a_real_texture_implant(tmp_path: Path) -> None:
    from dataclasses import replace

    from detectors.learned import SegmentationDetector
    from detectors.model_card import ModelCard
    from pipeline.detection.inference import predict_arrays
    from pipeline.training.train import TrainingRecipe, fit

    rng = np.random.default_rng(0)
    veg = _textured(VEG, rng)
    valid = np.ones(veg.shape[1:], bool)
    bare = _textured(BARE, rng)
    recipe = TrainingRecipe(name="tiny-real", steps=120, batch_size=6, chip_size=64, checkpoint_every=60,
                            train_scenes=(), validation_scenes=(), train_pairs=("steppe",),
                            mixture=Mixture(simulated=0.0, labelled=0.0, implanted=1.0, texture_share=1.0))
    backgrounds = [(veg, veg, valid), (bare, bare, valid)]  # the bank finds bare soil in the second
    card_path = fit(recipe, [], [], [], backgrounds, tmp_path / "ckpt.pt", tmp_path / "w", progress=False)

    card = ModelCard.read(card_path)
    detector = SegmentationDetector.load(card_path, device="cpu")
    case_rng = np.random.default_rng(99)
    before, after = same_image_pair(_textured(VEG, case_rng), case_rng)
    labels, surf = np.zeros(valid.shape, np.uint8), np.zeros(valid.shape, np.uint8)
    zones = np.full((7, *valid.shape), 0.5, np.float32)
    bank = TextureBank.build([(bare, valid)], [], case_rng)
    assert paste_surface(after, labels, zones, surf, "bare_soil", bank, case_rng, 300.0,
                         np.zeros(valid.shape, bool))
    probs, _ = predict_arrays(before, after, valid, {}, detector)
    change = probs[CATEGORY_IDS.index(OTHER_ID)]
    inside, outside = change[labels > 0].mean(), change[labels == 0].mean()
    assert inside > 0.5 and outside < 0.2, (inside, outside)
    assert card.training["steps_done"] == 120
    assert replace(recipe).mixture.implanted == 1.0
