"""Shared fixtures: a finished demo run (made once per session) and small generated rasters."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from detectors.bands import REFLECTANCE_BANDS, SCL_BAND


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in demo, run end to end into a temporary folder."""
    from pipeline.config import load_config
    from pipeline.demo import write_demo_config
    from pipeline.run import run

    out = tmp_path_factory.mktemp("demo")
    config_path = write_demo_config(out)
    run(load_config(config_path), config_path, progress=False)
    return out


ORIGIN = Affine(10, 0, 500000, 0, -10, 5430000)


def hears_ctrl_c() -> None:
    """A child's `preexec_fn`: SIGINT back to its default, so the child's Python raises KeyboardInterrupt on
    Ctrl-C even when the test run itself was started with SIGINT ignored (a shell's background job), which
    every child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def write_s2(path: Path, reflectance: np.ndarray, when: str, crs: str = "EPSG:32650", transform: Affine = ORIGIN,
             scl: np.ndarray | None = None, offset: int = -1000, descriptions: tuple[str, ...] | None = None) -> Path:
    """A small L2A-like GeoTIFF (uint16 DN = reflectance * 10000 - offset), optionally with SCL."""
    dn = np.clip(np.round(reflectance * 10000 - offset), 1, 65535).astype("uint16")
    bands = [*dn]
    names = list(descriptions or REFLECTANCE_BANDS)
    if scl is not None:
        bands.append(scl.astype("uint16"))
        names.append(SCL_BAND)
    with rasterio.open(path, "w", driver="GTiff", width=dn.shape[2], height=dn.shape[1], count=len(bands),
                       dtype="uint16", crs=crs, transform=transform, nodata=0) as dst:
        for i, (band, name) in enumerate(zip(bands, names, strict=True), start=1):
            dst.write(band, i)
            dst.set_band_description(i, name)
        dst.update_tags(ACQUISITION_DATE=when, PROCESSING_LEVEL="L2A", BOA_ADD_OFFSET=str(offset))
    return path


def demo_config_via(source: dict, demo_run: Path, out: Path) -> Path:
    """The demo's configuration with another imagery source, its permits and zones read from the
    finished demo run: the same scene through another door."""
    import yaml

    from pipeline.demo import demo_config

    config = demo_config()
    config["source"] = source
    for layer in [*config["permits"], *config["zones"]]:
        layer["path"] = str(demo_run / layer["path"]) if not Path(layer["path"]).is_absolute() else layer["path"]
    out.mkdir(parents=True)
    path = out / f"{source['type']}.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def run_leads(folder: Path):
    """A run's leads in lead-id order, without the evidence paths (they name the run folder)."""
    import geopandas as gpd

    leads = gpd.read_file(folder / "leads.gpkg", layer="leads", engine="pyogrio")
    return leads.drop(columns=[c for c in ("evidence",) if c in leads]).sort_values("lead_id").reset_index(drop=True)


def write_scene_series(folder: Path, dates: list[str], seed: int) -> list[Path]:
    """Small L2A files of varied pixels, one per date, with a cloud (SCL 9) over the top of the second."""
    rng = np.random.default_rng(seed)
    files = []
    for k, when in enumerate(dates):
        scl = np.full((64, 64), 4)
        if k == 1:
            scl[:20] = 9
        refl = rng.uniform(0.02, 0.4, (6, 64, 64)).astype(np.float32)
        files.append(write_s2(folder / f"S2_{when}.tif", refl, when, scl=scl))
    return files
