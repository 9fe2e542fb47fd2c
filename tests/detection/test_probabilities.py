"""The probability GeoTIFF written band of rows by band of rows equals one written whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipeline.detection.probabilities import PROBABILITY_NODATA, ProbabilityWriter, write_probabilities
from pipeline.errors import InputError
from pipeline.sources.scene import ReadGrid
from tests.conftest import ORIGIN

GRID = ReadGrid("EPSG:32650", ORIGIN, 300, 700)


def test_rows_written_in_bands_make_the_same_tiled_file_as_a_whole_write(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((2, GRID.height, GRID.width)).astype(np.float32)
    valid = rng.random((GRID.height, GRID.width)) > 0.1
    write_probabilities(tmp_path / "whole.tif", probs, valid, GRID, ("a", "b"))
    with ProbabilityWriter(tmp_path / "bands.tif", GRID, ("a", "b"), {"DETECTOR": "x"}) as writer:
        for r0, r1 in ((0, 100), (100, 333), (333, 334), (334, 700)):
            writer.write(probs[:, r0:r1], valid[r0:r1])
    with rasterio.open(tmp_path / "whole.tif") as whole, rasterio.open(tmp_path / "bands.tif") as bands:
        np.testing.assert_array_equal(bands.read(), whole.read())
        assert bands.block_shapes[0] == (256, 256) and bands.descriptions == ("a", "b")
        assert bands.nodata == PROBABILITY_NODATA and bands.tags()["DETECTOR"] == "x"


def test_a_failure_midway_leaves_no_file(tmp_path: Path) -> None:
    probs = np.zeros((1, GRID.height, GRID.width), dtype=np.float32)
    with pytest.raises(InputError, match="disk is full"), ProbabilityWriter(tmp_path / "p.tif", GRID, ("a",)) as writer:
        writer.write(probs[:, :300], np.ones((300, GRID.width), bool))
        raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
