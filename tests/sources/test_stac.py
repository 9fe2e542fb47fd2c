from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from pystac_client import Client
from shapely.geometry import box

from pipeline.config import DateRange, StacSource, Windows
from pipeline.errors import InputError
from pipeline.inputs.grid import make_cells
from pipeline.sources.local import LocalGeoTiffSource
from pipeline.sources.scene import ReadGrid
from pipeline.sources.stac import StacImagerySource, plan_stac
from tests.conftest import ORIGIN, demo_config_via, run_leads, write_s2, write_scene_series
from tests.sources.stac_server import COLLECTION, StacApi, split_into_band_cogs, write_static_catalog

GRID = ReadGrid("EPSG:32650", ORIGIN, 48, 48)
JULY_2024 = DateRange(start=date(2024, 7, 1), end=date(2024, 7, 31))
JULY_2025 = DateRange(start=date(2025, 7, 1), end=date(2025, 7, 31))
AOI = gpd.GeoSeries([box(*GRID.bounds)], crs=GRID.crs).to_crs("EPSG:4326").iloc[0]
DATES = ("2024-07-05", "2024-07-15", "2024-07-25", "2025-07-10", "2025-07-20")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list, Path]:
    """Five small L2A files (varied pixels, a cloud in one) and their per-band COGs and items."""
    folder = tmp_path_factory.mktemp("stac_scenes")
    files = write_scene_series(folder, DATES, seed=3)
    items = split_into_band_cogs(files, folder / "assets")
    return files, items, folder / "assets"


def _source(url: str, cache: Path, **kw) -> StacImagerySource:
    return StacSource(type="stac", url=url, collection=kw.pop("collection", COLLECTION), cache=cache,
                      **kw).build(AOI)


def _assert_same(a, b) -> None:
    np.testing.assert_array_equal(a.reflectance, b.reflectance)  # NaN where unseen, in both
    np.testing.assert_array_equal(a.valid, b.valid)
    assert a.dates == b.dates


def test_the_api_gives_the_local_sources_composite_and_a_second_read_fetches_nothing(scenes, tmp_path):
    files, items, assets = scenes
    local = LocalGeoTiffSource([str(f) for f in files])
    with StacApi(items, assets) as api:
        first = _source(api.url, tmp_path / "cache")
        for window in (JULY_2024, JULY_2025):
            _assert_same(first.composite(GRID, window), local.composite(GRID, window))
        fetched, searches = api.asset_requests, api.search_requests
        assert fetched > 0 and searches > 2  # the server pages two items at a time: `next` links were followed
        again = _source(api.url, tmp_path / "cache")
        for window in (JULY_2024, JULY_2025):
            _assert_same(again.composite(GRID, window), local.composite(GRID, window))
        assert api.asset_requests == fetched  # everything came from the cache
    cloudy = local.composite(GRID, JULY_2024)
    assert cloudy.dates == [date(2024, 7, 5), date(2024, 7, 15), date(2024, 7, 25)]


def test_a_static_catalog_on_disk_gives_the_local_sources_composite(scenes, tmp_path):
    files, items, assets = scenes
    catalog = write_static_catalog(items, assets, tmp_path / "catalog")
    source = _source(str(catalog), tmp_path / "cache")
    local = LocalGeoTiffSource([str(f) for f in files])
    _assert_same(source.composite(GRID, JULY_2025), local.composite(GRID, JULY_2025))


def test_a_static_catalog_given_relative_to_the_configuration_is_found(scenes, tmp_path):
    from pipeline.config import parse_config

    _, items, assets = scenes
    write_static_catalog(items, assets, tmp_path / "catalog")
    config = parse_config({"name": "x", "aoi": ["aoi.geojson"], "output": "run",
                           "windows": {"baseline": JULY_2024.model_dump(), "monitoring": JULY_2025.model_dump()},
                           "source": {"type": "stac", "url": "catalog/catalog.json"}}, tmp_path / "run.yaml")
    assert config.source.url == str(tmp_path / "catalog" / "catalog.json")
    assert config.source.cache == tmp_path / "run" / "imagery_cache"


def test_the_loopback_api_pages_get_and_post_searches(scenes):
    _, items, assets = scenes
    with StacApi(items, assets) as api:
        client = Client.open(api.url)
        for method in ("GET", "POST"):
            found = list(client.search(collections=[COLLECTION], bbox=AOI.bounds, method=method).items())
            assert sorted(i.id for i in found) == sorted(i.id for i in items)
        assert api.search_requests == 6  # five items, two a page, for each method


def test_a_scene_in_another_utm_zone_is_warped_as_the_local_source_warps_it(tmp_path):
    grid_51 = gpd.GeoSeries([box(*GRID.bounds)], crs=GRID.crs).to_crs("EPSG:32651").total_bounds
    from affine import Affine

    transform = Affine(10, 0, np.floor(grid_51[0] / 10) * 10 - 100, 0, -10, np.ceil(grid_51[3] / 10) * 10 + 100)
    n = int((grid_51[2] - grid_51[0]) / 10) + 25
    ramp = np.add.outer(np.arange(n), np.arange(n)) / (2 * n)
    refl = np.stack([0.05 + 0.1 * (b + 1) * ramp for b in range(6)]).astype(np.float32)
    f = write_s2(tmp_path / "z51.tif", refl, "2025-07-10", crs="EPSG:32651", transform=transform,
                 scl=np.full((n, n), 4))
    items = split_into_band_cogs([f], tmp_path / "assets")
    with StacApi(items, tmp_path / "assets") as api:
        comp = _source(api.url, tmp_path / "cache").composite(GRID, JULY_2025)
    local = LocalGeoTiffSource([str(f)]).composite(GRID, JULY_2025)
    # GDAL's warper approximates the transform per chunk, and chunks follow the file's layout (one
    # multi-band file against one COG per band): the same place to within an eighth of a pixel
    np.testing.assert_allclose(comp.reflectance, local.reflectance, atol=2e-3)
    assert comp.valid.all() and local.valid.all() and comp.dates == local.dates


def test_an_unknown_collection_names_the_ones_there_are(scenes, tmp_path):
    _, items, assets = scenes
    with StacApi(items, assets) as api, pytest.raises(InputError, match="sentinel-2-l2a") as err:
        _source(api.url, tmp_path / "cache", collection="sentinel-2-l1c")
    assert err.value.field == "source.collection" and "sentinel-2-l1c" in err.value.problem
    catalog = write_static_catalog(items, assets, tmp_path / "catalog")
    with pytest.raises(InputError, match="no collection 'landsat'"):
        _source(str(catalog), tmp_path / "cache", collection="landsat")


def test_a_static_catalog_that_is_not_there_says_so(tmp_path):
    with pytest.raises(InputError, match="no such file") as err:
        _source(str(tmp_path / "catalog.json"), tmp_path / "cache")
    assert err.value.field == "source.url"


def test_an_empty_search_is_an_error_not_a_blank_run(scenes, tmp_path):
    _, items, assets = scenes
    with StacApi(items, assets) as api:
        source = _source(api.url, tmp_path / "cache")
        with pytest.raises(InputError, match="no scene of collection 'sentinel-2-l2a' over the AOI between "
                                             "2023-07-01 and 2023-07-31") as err:
            source.composite(GRID, DateRange(start=date(2023, 7, 1), end=date(2023, 7, 31)))
    assert "widen the window" in err.value.fix


def test_an_all_cloud_window_names_the_dates_and_their_cloud_cover(scenes, tmp_path):
    _, items, assets = scenes
    with StacApi(items, assets) as api:
        source = _source(api.url, tmp_path / "cache", max_cloud_cover=10)
        assert source.composite(GRID, JULY_2025) is not None  # clear scenes pass the filter
        fetched = api.asset_requests
        with pytest.raises(InputError) as err:
            source.composite(GRID, DateRange(start=date(2024, 7, 10), end=date(2024, 7, 20)))
        assert api.asset_requests == fetched  # the cloudy scene was not read
    assert "2024-07-15 (31% cloud)" in err.value.problem and "max_cloud_cover 10%" in err.value.problem
    assert "raise source.max_cloud_cover" in err.value.fix


def test_a_server_that_is_down_points_offline_users_to_the_local_source_and_a_carried_cache(scenes, tmp_path):
    _, items, assets = scenes
    with StacApi(items, assets) as api:
        url = api.url
    with pytest.raises(InputError, match="cannot reach the STAC catalog") as err:
        _source(url, tmp_path / "cache")
    assert "type: local" in err.value.fix and "docs/sources/cache.md" in err.value.fix


def test_assets_the_server_stops_serving_stop_the_run_with_the_fix(scenes, tmp_path):
    _, items, assets = scenes
    with StacApi(items, assets) as api:
        source = _source(api.url, tmp_path / "cache")
        source.window_scenes(JULY_2025)  # searched while the server was up
    with pytest.raises(InputError, match="cannot read the asset") as err:
        source.composite(GRID, JULY_2025)
    assert "docs/sources/cache.md" in err.value.fix
    assert not list((tmp_path / "cache").glob("*/*.tif"))  # nothing half-fetched was cached


def test_signing_without_the_planetary_computer_package_says_how_to_install_it(tmp_path):
    try:
        import planetary_computer  # noqa: F401
        pytest.skip("planetary-computer is installed here")
    except ImportError:
        pass
    with pytest.raises(InputError, match="planetary-computer") as err:
        _source("https://planetarycomputer.microsoft.com/api/stac/v1", tmp_path / "cache", sign="planetary_computer")
    assert err.value.field == "source.sign"


def test_the_plan_counts_scenes_and_asset_reads_without_reading_pixels(scenes, tmp_path):
    _, items, assets = scenes
    cells = make_cells(AOI, 64, 10.0)
    windows = Windows(baseline=JULY_2024, monitoring=JULY_2025)
    with StacApi(items, assets) as api:
        config = StacSource(type="stac", url=api.url, cache=tmp_path / "cache")
        plan = plan_stac(config, AOI, cells, windows)
        assert api.asset_requests == 0
    assert plan.scenes == 5 and plan.cells == len(cells)
    assert plan.requests == 7 * 5 * len(cells)  # every scene covers every cell
    assert plan.bytes == 5 * len(cells) * 64 * 64 * 7 * 2


@pytest.mark.slow
def test_the_demo_through_a_stac_api_gives_the_local_runs_leads_and_a_second_run_fetches_nothing(demo_run, tmp_path):
    from pipeline.config import load_config
    from pipeline.run import run

    items = split_into_band_cogs(sorted((demo_run / "inputs" / "imagery").glob("*.tif")), tmp_path / "assets")
    cache = tmp_path / "cache"
    with StacApi(items, tmp_path / "assets", page_size=4) as api:
        for name in ("first", "second"):
            path = demo_config_via({"type": "stac", "url": api.url, "cache": str(cache)}, demo_run, tmp_path / name)
            run(load_config(path), path, progress=False)
            if name == "first":
                fetched = api.asset_requests
    assert fetched > 0 and api.asset_requests == fetched
    reference = run_leads(demo_run)
    assert len(reference) > 0
    for name in ("first", "second"):
        leads = run_leads(tmp_path / name)
        assert list(leads.category) == list(reference.category) and list(leads.reason) == list(reference.reason)
        assert leads.geometry.geom_equals_exact(reference.geometry, tolerance=1e-9).all()
    # the cache carried to an offline network, read by the local source with the server gone: every
    # lead is found again (cached grids off the cell's pixel grid are resampled onto it, so the
    # outlines may differ by a pixel; see docs/sources/cache.md)
    path = demo_config_via({"type": "local", "paths": [str(cache / "*" / "*.tif")]}, demo_run, tmp_path / "offline")
    run(load_config(path), path, progress=False)
    offline = run_leads(tmp_path / "offline")
    for _, lead in reference.iterrows():
        same = offline[(offline.category == lead.category) & offline.intersects(lead.geometry)]
        assert len(same) == 1, (lead.lead_id, lead.category)
