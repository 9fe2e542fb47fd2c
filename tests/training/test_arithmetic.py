"""Training's arithmetic: fp32 on the CPU by default, bf16 or fp16 with a loss scaler on a GPU."""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from detectors.learned import cpu_runs_natively
from detectors.model_card import ModelCard, ModelError
from pipeline.training.arithmetic import TrainingArithmetic, training_arithmetic
from pipeline.training.train import read_checkpoint
from tests.detectors.test_learned import TINY, _fit


def test_auto_on_the_cpu_trains_as_the_shipped_weights_were() -> None:
    arithmetic = training_arithmetic("cpu")
    assert arithmetic.name == "fp32" and not arithmetic.channels_last and not arithmetic.scaled


@pytest.mark.parametrize(("capability", "expected"), [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"),
                                                      ((9, 0), "bf16")])
def test_auto_on_a_gpu_picks_bf16_where_it_has_it_and_scaled_fp16_elsewhere(monkeypatch, capability,
                                                                           expected) -> None:
    """The GPU cannot be had here, so its answers are given."""
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.version, "hip", None)
    with warnings.catch_warnings():  # torch's scaler disables itself, with a warning, where CUDA is absent
        warnings.simplefilter("ignore")
        arithmetic = training_arithmetic("cuda")
    assert arithmetic.name == expected and arithmetic.channels_last
    assert arithmetic.scaled == (expected == "fp16")


def test_bf16_training_on_a_gpu_without_it_is_refused_naming_fp16(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    monkeypatch.setattr(torch.version, "hip", None)
    with pytest.raises(ModelError, match="Tesla V100 has no bf16 arithmetic; use precision fp16"):
        training_arithmetic("cuda", "bf16")


def test_an_unknown_training_precision_is_refused() -> None:
    with pytest.raises(ModelError, match="'tf32' is not one of auto, bf16, fp16, fp32"):
        training_arithmetic("cpu", "tf32")


def _scaled_on_cpu() -> TrainingArithmetic:
    """fp16 with a loss scaler, run on the CPU's own scaler (the GPU's is the same code on CUDA tensors)."""
    import torch

    return TrainingArithmetic("cpu", torch.float16, torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))


def test_the_scaler_steps_on_finite_gradients_and_skips_overflowed_ones() -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    arithmetic = _scaled_on_cpu()
    x = torch.ones(2, 4)
    start = net.weight.detach().clone()
    arithmetic.step(net(x).square().mean(), opt)
    moved = net.weight.detach().clone()
    assert not torch.equal(moved, start) and arithmetic.scaler.get_scale() == 2.0 ** 10
    arithmetic.step(net(x).sum() * float("inf"), opt)  # gradients overflow: no step, a lower scale
    assert torch.equal(net.weight.detach(), moved) and arithmetic.scaler.get_scale() == 2.0 ** 9


def test_a_checkpoint_keeps_the_scale_for_the_same_arithmetic_only() -> None:
    import torch

    net = torch.nn.Linear(4, 1)
    first = _scaled_on_cpu()
    first.step(net(torch.ones(2, 4)).sum() * float("inf"), torch.optim.SGD(net.parameters(), lr=0.1))
    state = first.state()
    assert state["arithmetic"] == "fp16" and state["scaler"]["scale"] == 2.0 ** 9
    again = _scaled_on_cpu()
    again.restore(state)
    assert again.scaler.get_scale() == 2.0 ** 9
    other = _scaled_on_cpu()
    other.restore({**state, "arithmetic": "bf16"})
    assert other.scaler.get_scale() == 2.0 ** 10
    assert TrainingArithmetic("cpu", torch.bfloat16).state() == {"arithmetic": "bf16", "scaler": {}}


@pytest.mark.slow
def test_bf16_training_on_the_cpu_is_recorded_and_a_change_of_arithmetic_is_told(tmp_path: Path, caplog) -> None:
    if not cpu_runs_natively("bf16"):
        pytest.skip("this CPU has no native bf16")
    _fit(tmp_path, replace(TINY, stop_after=6))  # fp32, interrupted at a checkpoint
    assert read_checkpoint(tmp_path / "ckpt.safetensors")[1]["arithmetic"] == "fp32"
    with caplog.at_level(logging.WARNING):
        card = ModelCard.read(_fit(tmp_path, precision="bf16"))
    assert "trained in fp32 up to step 6 and goes on in bf16" in caplog.text
    assert card.training["arithmetic"] == "bf16 on cpu" and card.training["steps_done"] == TINY.steps
