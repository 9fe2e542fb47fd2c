"""`make precision-check`: fp32 against a reduced precision, on a synthetic pair with a change label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from detectors.learned import cpu_runs_natively
from detectors.model_card import ModelError
from pipeline.evaluation import bench
from pipeline.evaluation.precision import BEGIN, END, compare_pair, main
from pipeline.sources.pair import read_pair


@pytest.fixture(scope="module")
def labelled_pair(tmp_path_factory) -> Path:
    """A 512² synthetic pair whose change label is where its bands changed."""
    folder = tmp_path_factory.mktemp("pairs") / "synthetic"
    before, after = bench.write_synthetic_pair(folder, 512, seed=4)
    pair = read_pair(before, after)
    change = (np.abs(pair.after - pair.before).max(axis=0) > 0.1).astype("uint8")
    with rasterio.open(before) as src:
        profile = src.profile | {"count": 1, "dtype": "uint8", "nodata": None}
    with rasterio.open(folder / "change.tif", "w", **profile) as dst:
        dst.write(change, 1)
    return folder


def test_the_same_precision_twice_differs_nowhere(labelled_pair: Path, tmp_path: Path) -> None:
    row = compare_pair(labelled_pair, tmp_path, precision="fp32")
    assert row["largest difference (of 250)"] == 0 and row["flagged by only one %"] == 0
    assert row["flagged ha fp32"] > 0  # the synthetic changes were found, so the comparison compared something
    assert 0 < row["pixel F1 fp32"] <= 1 and 0 < row["object recall fp32"] <= 1


def test_bf16_is_compared_with_fp32_and_written_into_the_page(labelled_pair: Path, tmp_path: Path) -> None:
    page = tmp_path / "models.md"
    page.write_text("# Models\n\nKept.\n")
    args = [str(labelled_pair.parent), "--work", str(tmp_path / "work"), "--out", str(page)]
    if not cpu_runs_natively("bf16"):
        with pytest.raises(ModelError, match="no native bf16"):
            main(args)
        return
    main(args)
    text = page.read_text()
    assert text.startswith("# Models\n\nKept.\n") and BEGIN in text and END in text
    header = next(line for line in text.splitlines() if line.startswith("| pair |"))
    row = dict(zip(header.strip("|").split("|"), text.split(header, 1)[1].splitlines()[2].strip("|").split("|"),
                   strict=True))
    row = {k.strip(): v.strip() for k, v in row.items()}
    assert row["pair"] == "synthetic"
    assert 0 < int(row["largest difference (of 250)"]) < 250  # bf16 moved some answers, not all of them
    assert 0 <= float(row["flagged by only one %"]) < 5
    assert abs(float(row["pixel F1 fp32"]) - float(row["pixel F1 bf16"])) < 0.05
