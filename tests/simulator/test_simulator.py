"""The simulated scene: what the demo and the tests stand on."""

import geopandas as gpd
import numpy as np
import rasterio

from detectors.categories import CLASSIFIED_IDS
from pipeline.simulator.writer import PERMIT_COLUMNS_ZH


def test_imagery_is_l2a_like(demo_run):
    files = sorted((demo_run / "inputs" / "imagery").glob("*.tif"))
    assert len(files) == 6
    with rasterio.open(files[0]) as src:
        assert src.dtypes[0] == "uint16" and src.crs.to_epsg() == 32650 and src.res == (10.0, 10.0)
        assert src.descriptions == ("B02", "B03", "B04", "B08", "B11", "B12", "SCL")
        assert src.tags()["BOA_ADD_OFFSET"] == "-1000"
        dn = src.read(4)
        scl = src.read(7)
    refl = (dn.astype(float) - 1000) / 10000
    assert 0.0 <= np.percentile(refl, 1) and np.percentile(refl, 99) < 0.7
    assert {4, 5, 6} <= set(np.unique(scl))  # vegetation, bare, water
    assert np.isin(scl, (3, 8, 9, 10)).mean() > 0.005  # clouds and shadows are there and flagged


def test_every_category_is_planted_with_permit_scenarios(demo_run):
    truth = gpd.read_file(demo_run / "inputs" / "truth.gpkg", layer="changes")
    assert set(truth.category) == set(CLASSIFIED_IDS)
    assert {"no_permit", "permitted", "partly_covered", "outside_boundary", "expired", "reclamation_overdue",
            "wrong_type"} <= set(truth.scenario)
    distractors = gpd.read_file(demo_run / "inputs" / "truth.gpkg", layer="distractors")
    assert set(distractors.kind) == {"lake_level", "burn_scar", "drought", "fallow"}


def test_permits_arrive_as_a_bureau_exports_them(demo_run):
    permits = gpd.read_file(demo_run / "inputs" / "permits.gpkg")
    assert permits.crs.to_epsg() == 4490
    assert set(PERMIT_COLUMNS_ZH.values()) <= set(permits.columns)
    assert (~permits.geometry.is_valid).sum() == 1


def test_simulation_is_deterministic_for_a_seed(demo_run, tmp_path):
    from pipeline.demo import DEMO_AOI, DEMO_SEED
    from pipeline.inputs.aoi import read_aoi
    from pipeline.paths import AOI_DIR
    from pipeline.simulator.writer import simulate_scene

    lake = gpd.read_file(AOI_DIR / "hulun_lake.geojson").geometry.iloc[0]
    zone = gpd.read_file(AOI_DIR / "hulun_lake_protection_zone.geojson").geometry.iloc[0]
    again = simulate_scene(tmp_path / "again", read_aoi([DEMO_AOI]).geometry, DEMO_SEED, lake, zone)
    for path in again.imagery:
        with rasterio.open(path) as a, rasterio.open(demo_run / "inputs" / "imagery" / path.name) as b:
            assert np.array_equal(a.read(), b.read())
    t1 = gpd.read_file(again.truth, layer="changes")
    t2 = gpd.read_file(demo_run / "inputs" / "truth.gpkg", layer="changes")
    assert t1.geometry.geom_equals_exact(t2.geometry, tolerance=1e-6).all()


def test_level_1c_files_carry_top_of_atmosphere_reflectance(tmp_path):
    from datetime import date

    from pipeline.simulator.landscape import SimulationGrid
    from pipeline.simulator.render import RenderedAcquisition, top_of_atmosphere
    from pipeline.simulator.writer import write_acquisition
    from pipeline.sources.local import inspect_file, read_reflectance
    from pipeline.sources.scene import ReadGrid
    from tests.conftest import ORIGIN

    surface = np.full((6, 16, 16), 0.1, dtype=np.float32)
    acq = top_of_atmosphere(RenderedAcquisition(date(2025, 8, 2), surface, np.full((16, 16), 4)),
                            np.random.default_rng(0))
    assert acq.scl is None
    path = tmp_path / "S2_L1C_20250802.tif"
    write_acquisition(path, acq, SimulationGrid("EPSG:32650", ORIGIN, 16, 16))
    with rasterio.open(path) as src:
        assert src.count == 6 and src.tags()["PROCESSING_LEVEL"] == "L1C"
    info = inspect_file(path)
    assert info.offset == -1000 and "SCL" not in info.band_index
    toa = read_reflectance(info, ReadGrid("EPSG:32650", ORIGIN, 16, 16), tuple(info.band_index))
    assert np.allclose(toa, acq.reflectance, atol=1e-4)
    assert toa[0].mean() > 0.1 + 0.02  # path radiance brightens blue
    assert abs(toa[5].mean() - 0.1) < 0.02  # and barely touches SWIR
