"""The feature stack built with torch (on the device) equals the former numpy stack, and the
learned detector's torch path equals its former numpy path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detectors import DEFAULT_MODEL, load_detector
from detectors.bands import indices
from detectors.categories import Zone
from detectors.features import (
    INDEX_NAMES,
    SPECTRAL_CHANNELS,
    _index_tensors,
    feature_stack,
    feature_tensor,
    standardise,
    standardised,
)
from tests.detection import former


def _tiles(rng: np.random.Generator, n: int = 3, size: int = 64):
    before = rng.uniform(-0.02, 0.6, (n, 6, size, size)).astype(np.float32)
    after = rng.uniform(-0.02, 0.6, (n, 6, size, size)).astype(np.float32)
    before[0, :, :5, :5] = np.nan  # not seen on the before date
    after[1, :, 10:12] = 0.0  # a black stripe: ratios of zero sums
    valid = np.isfinite(before).all(axis=1) & np.isfinite(after).all(axis=1)
    zones = {Zone.FOREST: rng.random((n, size, size)) > 0.5, Zone.MINING_DISTRICT: rng.random((n, size, size)) > 0.7}
    return before, after, valid, zones


def test_torch_indices_are_those_of_the_bands_module() -> None:
    stack = np.random.default_rng(0).uniform(0, 0.5, (2, 6, 16, 16)).astype(np.float32)
    stack[0, :, 0, 0] = 0.0
    got = _index_tensors(torch.from_numpy(stack))
    want = indices(np.moveaxis(stack, 1, 0))
    for name, tensor in zip(INDEX_NAMES, got, strict=True):
        np.testing.assert_allclose(tensor.numpy(), want[name], atol=1e-6, err_msg=name)


def test_the_feature_stack_equals_the_former_numpy_stack() -> None:
    before, after, valid, zones = _tiles(np.random.default_rng(1))
    want = former.feature_stack(before, after, valid, zones)
    np.testing.assert_allclose(feature_stack(before, after, valid, zones), want, atol=1e-5)
    got = feature_tensor(*(torch.from_numpy(a) for a in (before, after, valid)),
                         {z: torch.from_numpy(m) for z, m in zones.items()})
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


@pytest.mark.parametrize("active", [None, ["temporary_land", "forest", "mine"]])
def test_the_learned_detector_on_tensors_equals_its_former_numpy_path(active) -> None:
    det = load_detector(DEFAULT_MODEL, active, "cpu")
    before, after, valid, zones = _tiles(np.random.default_rng(2))
    want = former.learned_predict(det, before, after, valid, zones)
    np.testing.assert_allclose(det.predict(before, after, valid, zones), want, atol=1e-4)
    got = det.predict_tensor(*(torch.from_numpy(a) for a in (before, after, valid)),
                             {z: torch.from_numpy(m) for z, m in zones.items()})
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4)
    assert want[:, :-1].max() > 0.1  # there is something to agree on


def test_standardised_scales_as_standardise_does_and_lays_the_stack_out_for_the_network() -> None:
    before, after, valid, zones = _tiles(np.random.default_rng(3))
    stack = torch.from_numpy(feature_stack(before, after, valid, zones))
    rng = np.random.default_rng(4)
    mean = torch.from_numpy(rng.normal(0, 1, SPECTRAL_CHANNELS).astype(np.float32))
    std = torch.from_numpy(rng.uniform(0.1, 2, SPECTRAL_CHANNELS).astype(np.float32))
    got = standardised(stack, mean, std)
    assert got.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(got.numpy(), standardise(stack.clone(), mean, std).numpy(), rtol=1e-5, atol=1e-5)
    assert torch.equal(stack, torch.from_numpy(feature_stack(before, after, valid, zones)))  # its input untouched
