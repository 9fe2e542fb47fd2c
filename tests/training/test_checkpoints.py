"""Training checkpoints: safetensors and JSON that resume exactly; pickles are never loaded."""

from __future__ import annotations

import logging
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from detectors.model_card import ModelCard
from pipeline.training.train import read_checkpoint
from tests.detectors.test_learned import TINY, _fit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    whole = _fit(tmp_path / "whole")
    _fit(tmp_path / "parts", replace(TINY, stop_after=12))  # interrupted at a checkpoint
    tensors, state = read_checkpoint(tmp_path / "parts" / "ckpt.safetensors")
    assert state["step"] == 12 and len(state["losses"]) == 12 and state["arithmetic"] == "fp32"
    assert any(k.startswith("optimizer.") for k in tensors) and any(k.startswith("model.") for k in tensors)
    resumed = _fit(tmp_path / "parts")
    assert ModelCard.read(resumed).training["steps_done"] == TINY.steps
    a = load_file(ModelCard.read(whole).weights_path(whole))
    b = load_file(ModelCard.read(resumed).weights_path(resumed))
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


class _Trap:
    """Unpickling this writes a file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "unpickled")


def test_an_old_pickle_checkpoint_is_not_unpickled_and_training_restarts(tmp_path: Path, caplog) -> None:
    marker = tmp_path / "unpickled.txt"
    (tmp_path / "ckpt.pt").write_bytes(pickle.dumps({"step": 20, "model": _Trap(marker)}))
    pickle.loads(pickle.dumps(_Trap(tmp_path / "probe.txt")))
    assert (tmp_path / "probe.txt").exists()  # the trap springs when unpickled
    with caplog.at_level(logging.WARNING):
        card = _fit(tmp_path, replace(TINY, steps=6, checkpoint_every=3))
    assert not marker.exists()
    assert ModelCard.read(card).training["steps_done"] == 6  # from step 0, not 20
    assert "old pickle format" in caplog.text and "training starts from step 0" in caplog.text
    assert (tmp_path / "ckpt.pt").exists()  # left for the user to delete


def test_a_damaged_checkpoint_is_a_note_not_a_traceback(tmp_path: Path, caplog) -> None:
    path = tmp_path / "ckpt.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with caplog.at_level(logging.WARNING):
        assert read_checkpoint(path) is None
    assert "cannot be read" in caplog.text and str(path) in caplog.text


def test_no_code_loads_a_pickle() -> None:
    needles = ("weights_only=" + "False", "torch." + "load(", "pickle." + "load(")
    found = [f"{p.relative_to(ROOT)}: {n}" for folder in ("pipeline", "detectors", "tests", "notebooks")
             for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".ipynb")
             for n in needles if n in p.read_text(encoding="utf-8")]
    assert found == []
