"""The learned detector: model card, weights integrity, band checks, training, inference invariants."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from detectors import DEFAULT_MODEL
from detectors.bands import REFLECTANCE_BANDS
from detectors.categories import CATEGORY_IDS, CLASSIFIED_IDS, Zone
from detectors.features import CONTEXT_ZONES, FEATURE_NAMES, UNKNOWN_ZONE, feature_stack
from detectors.learned import (
    WEIGHTS_DIR,
    SegmentationDetector,
    check_cuda_precision,
    cpu_runs_natively,
    folded_batch_norms,
)
from detectors.model_card import ModelCard, ModelError
from pipeline.training.scenes import SceneArrays
from pipeline.training.train import TrainingRecipe, fit, read_checkpoint

SHIPPED = WEIGHTS_DIR / f"{DEFAULT_MODEL}.json"


def tiny_scene(rng: np.random.Generator, size: int = 96) -> SceneArrays:
    """Vegetated ground where rectangles turn to bright bare soil (temporary land) or coal (mine)."""
    veg = np.array([0.03, 0.06, 0.04, 0.35, 0.18, 0.09], dtype=np.float32)[:, None, None]
    before = veg * rng.uniform(0.9, 1.1, (1, size, size)).astype(np.float32)
    after = before * rng.uniform(0.97, 1.03, (6, size, size)).astype(np.float32)
    labels = np.zeros((size, size), dtype=np.uint8)
    surfaces = {1: [0.18, 0.22, 0.26, 0.30, 0.36, 0.32], 8: [0.03, 0.03, 0.03, 0.035, 0.04, 0.04]}
    for _ in range(4):
        k = int(rng.choice(list(surfaces)))
        r, c = rng.integers(4, size - 20, 2)
        h, w = rng.integers(6, 16, 2)
        after[:, r:r + h, c:c + w] = np.array(surfaces[k], dtype=np.float32)[:, None, None]
        labels[r:r + h, c:c + w] = k
    zones = np.zeros((len(CONTEXT_ZONES), size, size), dtype=np.uint8)
    return SceneArrays(before=before, after=after, valid=np.ones((size, size), bool), zones=zones, labels=labels,
                       distractors=np.zeros((size, size), bool))


TINY = TrainingRecipe(name="tiny", steps=24, batch_size=4, chip_size=64, learning_rate=3e-3, checkpoint_every=6,
                      train_scenes=(), validation_scenes=())


def _fit(tmp: Path, recipe: TrainingRecipe = TINY, precision: str = "auto") -> Path:
    rng = np.random.default_rng(0)
    scenes = [tiny_scene(rng) for _ in range(3)]
    return fit(recipe, scenes, [tiny_scene(rng)], [], [], tmp / "ckpt.safetensors", tmp / "weights", progress=False,
               precision=precision)


def test_feature_stack_marks_unknown_zones_and_hides_unseen_pixels() -> None:
    rng = np.random.default_rng(1)
    before, after = rng.uniform(0, 0.4, (2, 1, 6, 8, 8)).astype(np.float32)
    valid = np.ones((1, 8, 8), bool)
    valid[0, 0, 0] = False
    stack = feature_stack(before, after, valid, {Zone.FOREST: np.ones((1, 8, 8), bool)})
    assert stack.shape == (1, len(FEATURE_NAMES), 8, 8)
    assert np.all(stack[0, FEATURE_NAMES.index("zone_forest")] == 1.0)
    assert np.all(stack[0, FEATURE_NAMES.index("zone_lake")] == UNKNOWN_ZONE)
    assert np.all(stack[0, :FEATURE_NAMES.index("valid"), 0, 0] == 0.0)
    ratio = stack[0, FEATURE_NAMES.index("logratio_B04"), 3, 3]
    assert ratio == pytest.approx(np.log((after[0, 2, 3, 3] + 0.01) / (before[0, 2, 3, 3] + 0.01)), rel=1e-5)


@pytest.mark.slow
def test_short_training_lowers_the_loss_and_writes_a_verified_model(tmp_path: Path) -> None:
    card_path = _fit(tmp_path)
    card = ModelCard.read(card_path)
    assert card.training["steps_done"] == 24
    assert card.training["arithmetic"] == "fp32 on cpu"  # the shipped weights' arithmetic, by default
    det = SegmentationDetector.load(card_path, device="cpu")
    assert det.card.weights_sha256 == card.weights_sha256
    assert set(det.thresholds) == set(CATEGORY_IDS)


@pytest.mark.slow
def test_loss_falls_between_first_and_last_steps(tmp_path: Path) -> None:
    recipe = replace(TINY, steps=40, checkpoint_every=1000)
    _fit(tmp_path, recipe)
    _, state = read_checkpoint(tmp_path / "ckpt.safetensors")
    losses = state["losses"]
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])


def test_model_card_round_trips(tmp_path: Path) -> None:
    card = ModelCard.read(SHIPPED)
    copy = tmp_path / "card.json"
    copy.write_text(card.to_json(), encoding="utf-8")
    assert ModelCard.read(copy) == card
    assert card.input_bands == list(REFLECTANCE_BANDS)
    assert card.categories == list(CLASSIFIED_IDS)
    assert card.features == list(FEATURE_NAMES)
    assert len(card.normalisation["mean"]) == FEATURE_NAMES.index("valid")


def test_card_with_a_bad_field_names_file_and_field(tmp_path: Path) -> None:
    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    data["thresholds"] = "high"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match=r"bad\.json.*'thresholds'"):
        ModelCard.read(bad)


def _shipped_copy(folder: Path) -> tuple[Path, Path]:
    """A copy of the shipped card and weights, to damage."""
    card = ModelCard.read(SHIPPED)
    shutil.copy(SHIPPED, folder / SHIPPED.name)
    shutil.copy(card.weights_path(SHIPPED), folder / card.weights_file)
    return folder / SHIPPED.name, folder / card.weights_file


def _card_matching(card_path: Path, weights: Path) -> None:
    """Record the weights' present hash in the card, as a card written for a damaged file would."""
    from detectors.model_card import sha256_of

    card = json.loads(card_path.read_text(encoding="utf-8"))
    card_path.write_text(json.dumps({**card, "weights_sha256": sha256_of(weights)}), encoding="utf-8")


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    card_path, weights = _shipped_copy(tmp_path)
    SegmentationDetector.load(card_path, device="cpu")  # the intact copy loads
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        SegmentationDetector.load(card_path, device="cpu")


@pytest.mark.parametrize("keep", [0.5, 0.0001, 0.0])
def test_truncated_weights_with_a_matching_card_are_refused_naming_the_file(tmp_path: Path, capsys, keep) -> None:
    from pipeline.cli import main

    card_path, weights = _shipped_copy(tmp_path)
    data = weights.read_bytes()
    weights.write_bytes(data[:int(len(data) * keep)])
    _card_matching(card_path, weights)
    with pytest.raises(ModelError, match="not a whole safetensors file") as err:
        SegmentationDetector.load(card_path, device="cpu")
    assert str(weights) in str(err.value) and "weights/" in str(err.value) and "make train" in str(err.value)
    out = tmp_path / "out"
    assert main(["detect", "before.tif", "after.tif", "--out", str(out), "--detector", str(card_path),
                 "--device", "cpu"]) == 2
    stderr = capsys.readouterr().err
    assert str(weights) in stderr and "Traceback" not in stderr


def test_weights_of_another_architecture_are_refused_naming_the_tensor(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    card_path, weights = _shipped_copy(tmp_path)
    tensors = load_file(weights)
    conv = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[conv] = tensors[conv][:1].clone()  # as if trained with fewer channels
    tensors["head.extra.weight"] = tensors[conv].clone()
    save_file(tensors, str(weights))
    _card_matching(card_path, weights)
    with pytest.raises(ModelError, match=r"2 tensor\(s\) do not fit the architecture") as err:
        SegmentationDetector.load(card_path, device="cpu")
    message = str(err.value)
    assert str(weights) in message and str(card_path) in message
    assert f"{conv} has shape" in message and "head.extra.weight is not in the architecture" in message
    assert "weights/" in message


def test_scene_with_other_bands_is_refused() -> None:
    from datetime import date

    from pipeline.detection.inference import predict_scene
    from pipeline.detection.tiling import Tiling
    from pipeline.errors import InputError
    from pipeline.sources.scene import Composite, ReadGrid, Scene
    from tests.conftest import ORIGIN

    det = SegmentationDetector.load(SHIPPED, device="cpu")
    comp = Composite(np.full((6, 32, 32), 0.1, np.float32), np.ones((32, 32), bool), [date(2025, 8, 2)],
                     np.ones((32, 32), np.uint8))
    grid = ReadGrid("EPSG:32650", ORIGIN, 32, 32)
    predict_scene(Scene(grid, REFLECTANCE_BANDS, comp, comp), {}, det, Tiling(32, 4, 1))  # the model's own bands run
    swapped = ("B02", "B03", "B04", "B8A", "B11", "B12")
    with pytest.raises(InputError, match=r"detection\.detector.*B08.*B8A"):
        predict_scene(Scene(grid, swapped, comp, comp), {}, det, Tiling(32, 4, 1))


@pytest.fixture(scope="module")
def shipped_and_tile() -> tuple[SegmentationDetector, np.ndarray, np.ndarray, np.ndarray, dict]:
    det = SegmentationDetector.load(SHIPPED, device="cpu")
    scene = tiny_scene(np.random.default_rng(5), size=128)
    n = 8
    before = np.repeat(scene.before[None], n, axis=0)
    after = np.stack([np.roll(scene.after, 7 * i, axis=-1) for i in range(n)])
    valid = np.ones((n, 128, 128), bool)
    zones = {Zone.GRASSLAND: np.ones((n, 128, 128), bool)}
    return det, before, after, valid, zones


def test_batch_of_one_equals_batch_of_eight(shipped_and_tile) -> None:
    det, before, after, valid, zones = shipped_and_tile
    together = det.predict(before, after, valid, zones)
    alone = np.concatenate([det.predict(before[i:i + 1], after[i:i + 1], valid[i:i + 1],
                                        {z: m[i:i + 1] for z, m in zones.items()}) for i in range(len(before))])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_predictions_respect_zones_and_unseen_pixels(shipped_and_tile) -> None:
    det, before, after, valid, _ = shipped_and_tile
    valid = valid.copy()
    valid[:, :10] = False
    out = det.predict(before, after, valid, {Zone.FOREST: np.zeros_like(valid)})
    assert out.shape == (len(before), len(CATEGORY_IDS), 128, 128)
    assert np.all(out[:, CATEGORY_IDS.index("forest")] == 0)
    assert np.all(out[:, :, :10] == 0)
    assert np.all((out >= 0) & (out <= 1))


def test_auto_precision_on_the_cpu_keeps_fp32s_answers(shipped_and_tile) -> None:
    det, before, after, valid, zones = shipped_and_tile
    det.precision = "fp32"
    fp32 = det.predict(before[:2], after[:2], valid[:2], {z: m[:2] for z, m in zones.items()})
    det.precision = "auto"
    auto = det.predict(before[:2], after[:2], valid[:2], {z: m[:2] for z, m in zones.items()})
    np.testing.assert_array_equal(auto, fp32)


def test_bf16_on_the_cpu_runs_in_bf16_or_is_refused_naming_the_fix(shipped_and_tile) -> None:
    det, before, after, valid, zones = shipped_and_tile
    args = before[:2], after[:2], valid[:2], {z: m[:2] for z, m in zones.items()}
    fp32 = det.predict(*args)
    if not cpu_runs_natively("bf16"):
        with pytest.raises(ModelError, match=r"no native bf16.+use precision fp32"):
            det.precision = "bf16"
        assert det.precision == "auto"
        return
    det.precision = "bf16"
    try:
        reduced = det.predict(*args)
    finally:
        det.precision = "auto"
    diff = np.abs(reduced - fp32)
    assert 0 < diff.max() < 0.2  # it ran in bf16 (answers moved), and close to fp32
    assert (reduced.argmax(1) == fp32.argmax(1)).mean() > 0.99


@pytest.mark.parametrize(("capability", "hip", "refused"), [((7, 5), None, True), ((8, 0), None, False),
                                                         ((9, 0), None, False), ((7, 0), "6.2", False)])
def test_bf16_on_a_gpu_without_it_is_refused_naming_fp16(monkeypatch, capability, hip, refused) -> None:
    """A T4 or V100 (compute capability 7.x) has no bf16 convolutions; torch may still report bf16 as
    supported there, emulated. The GPU itself cannot be had here, so its answers are given."""
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    monkeypatch.setattr(torch.version, "hip", hip)
    if refused:
        with pytest.raises(ModelError, match="Tesla T4 has no bf16 arithmetic; use precision fp16"):
            check_cuda_precision("bf16")
    else:
        check_cuda_precision("bf16")
    check_cuda_precision("fp16")  # fp16 is every CUDA GPU's


def test_an_unknown_precision_is_refused(shipped_and_tile) -> None:
    det = shipped_and_tile[0]
    with pytest.raises(ModelError, match="'fp8' is not one of auto, bf16, fp16, fp32"):
        det.precision = "fp8"


@pytest.mark.slow
def test_gpu_check_script_runs_its_comparison(demo_run: Path) -> None:
    from pipeline.evaluation.gpucheck import check

    lines = check("cpu", batches=(2,), repeats=1, demo_runs=0, scene=demo_run / "inputs")
    text = "\n".join(lines)
    assert "same class for 100.00 % of valid pixels" in text
    assert "| 2 | fp32 |" in text and "| 2 | autocast, channels_last |" in text


def test_odd_sized_images_are_padded_not_refused(shipped_and_tile) -> None:
    det, before, after, valid, zones = shipped_and_tile
    out = det.predict(before[:1, :, :50, :70], after[:1, :, :50, :70], valid[:1, :50, :70],
                      {z: m[:1, :50, :70] for z, m in zones.items()})
    assert out.shape == (1, len(CATEGORY_IDS), 50, 70) and np.isfinite(out).all()


def test_asking_for_a_gpu_that_is_not_there_is_a_clear_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelError, match="device 'cuda'"):
        SegmentationDetector.load(SHIPPED, device="cuda")


def test_a_version_1_card_is_upgraded_and_a_newer_one_refused(tmp_path: Path) -> None:
    import json

    from detectors.model_card import CARD_VERSION

    card = json.loads((WEIGHTS_DIR / f"{DEFAULT_MODEL}.json").read_text(encoding="utf-8"))
    old = {k: v for k, v in card.items() if k not in ("card_version", "licence")}
    old["thresholds"] = {k: v for k, v in old["thresholds"].items() if k != "other"}
    (tmp_path / "v1.json").write_text(json.dumps(old), encoding="utf-8")
    upgraded = ModelCard.read(tmp_path / "v1.json")
    assert upgraded.card_version == CARD_VERSION and upgraded.licence == "unstated"
    assert upgraded.thresholds["other"] == 0.5
    (tmp_path / "v9.json").write_text(json.dumps({**card, "card_version": 9}), encoding="utf-8")
    with pytest.raises(ModelError, match="card_version"):
        ModelCard.read(tmp_path / "v9.json")


def test_thresholds_chosen_again_are_those_training_chose(tmp_path: Path) -> None:
    from pipeline.training.train import rewrite_thresholds

    card_path = _fit(tmp_path)
    chosen = ModelCard.read(card_path)
    spoilt = chosen.model_copy(update={"thresholds": dict.fromkeys(chosen.thresholds, 0.99)})
    card_path.write_text(spoilt.to_json(), encoding="utf-8")
    rng = np.random.default_rng(0)  # the scenes `_fit` drew: three to train on, then the validation scene
    validation = [tiny_scene(rng) for _ in range(4)][3:]
    rewrite_thresholds(card_path, validation, [], progress=False)
    again = ModelCard.read(card_path)
    assert again.thresholds == chosen.thresholds
    assert again.metrics["validation_objects"] == chosen.metrics["validation_objects"]
    assert again.weights_sha256 == chosen.weights_sha256


@pytest.mark.parametrize("arch", ["Unet", "UnetPlusPlus"])
def test_folding_batch_norms_into_convolutions_keeps_the_networks_answers(arch: str) -> None:
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(0)
    net = getattr(smp, arch)(encoder_name="tu-regnetx_002", encoder_weights=None, in_channels=38, classes=9).eval()
    for norm in net.modules():  # statistics far from the identity, so a norm that was dropped would show
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.running_mean.normal_(0, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.data.uniform_(0.5, 1.5)
            norm.bias.data.normal_(0, 0.2)
    x = torch.randn(2, 38, 64, 96)
    with torch.inference_mode():
        want = net(x)
        before = sum(type(m) is torch.nn.BatchNorm2d for m in net.modules())
        folded_batch_norms(net)
        got = net(x.contiguous(memory_format=torch.channels_last))
    after = sum(type(m) is torch.nn.BatchNorm2d for m in net.modules())
    assert after < before  # the decoder's conv-norm-ReLU blocks were folded
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_the_shipped_network_runs_folded_and_in_channels_last() -> None:
    import torch

    det = SegmentationDetector.load(WEIGHTS_DIR / f"{DEFAULT_MODEL}.json", device="cpu")
    decoder_norms = [m for m in det.net.decoder.modules() if type(m) is torch.nn.BatchNorm2d]
    assert not decoder_norms
    first = next(m for m in det.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("preset", "seen"), [(None, "1"), ("0", "0")])
def test_torch_is_asked_for_huge_pages_unless_the_user_said_otherwise(preset: str | None, seen: str) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if preset is not None:
        env["THP_MEM_ALLOC_ENABLE"] = preset
    out = subprocess.run([sys.executable, "-c", "import os, detectors; print(os.environ['THP_MEM_ALLOC_ENABLE'])"],
                         env=env, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == seen
