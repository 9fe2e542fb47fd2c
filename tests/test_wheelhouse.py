"""The offline wheelhouse: eoleads' runtime requirements pinned to what is installed, wheels for the target."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from pipeline.wheelhouse import LINUX_X86_64, TORCH, Pin, _download, runtime_closure


def test_the_closure_pins_every_runtime_requirement_to_its_installed_version() -> None:
    pins = {p.name: p.version for p in runtime_closure("3.11")}
    for name in ("rasterio", "pyogrio", "geopandas", "segmentation-models-pytorch", "sentinelhub", "torch", "timm"):
        assert pins[name] == metadata.version(name)
    assert "distributed" in pins  # through dask[distributed]: an extra's requirements are followed
    assert "pytest" not in pins and "torchgeo" not in pins  # the dev extra is not the runtime
    assert "colorama" not in pins  # tqdm's, on Windows only


def test_skipping_torch_leaves_out_what_only_torch_needs() -> None:
    whole = {p.name for p in runtime_closure("3.12")}
    without = {p.name for p in runtime_closure("3.12", TORCH)}
    assert {"torch", "torchvision", "triton"} <= whole
    assert not {"torch", "torchvision", "triton"} & without
    assert not any(n.startswith("nvidia-") for n in without) and any(n.startswith("nvidia-") for n in whole)
    assert {"timm", "safetensors", "rasterio"} <= without  # needed beside torch, by smp and eoleads


@pytest.mark.slow
def test_a_wheel_is_fetched_for_the_target_and_a_source_only_one_is_built_pure(tmp_path: Path) -> None:
    """From the registry this machine installs from: a binary wheel for another Python, and spectral,
    which the registry has only as a source archive, built here as a pure-Python wheel."""
    _download(Pin("shapely", metadata.version("shapely")), tmp_path, "3.12", LINUX_X86_64)
    _download(Pin("spectral", metadata.version("spectral")), tmp_path, "3.12", LINUX_X86_64)
    names = sorted(p.name for p in tmp_path.glob("*.whl"))
    assert len(names) == 2
    assert "cp312" in names[0] and "manylinux" in names[0] and names[0].startswith("shapely-")
    assert names[1].startswith("spectral-") and names[1].endswith("-none-any.whl")


def test_installing_from_a_folder_that_is_no_wheelhouse_names_the_fix(tmp_path: Path) -> None:
    from pipeline.errors import InputError
    from pipeline.wheelhouse import install

    with pytest.raises(InputError, match=r"requirements.txt: not found\n  fix: make the wheelhouse with `make "):
        install(tmp_path / "wheels", tmp_path / "venv")
    assert not (tmp_path / "venv").exists()  # nothing was built
