"""The Sentinel Hub source through the real sentinelhub-py client, against a loopback Sentinel Hub."""

import logging
import socket
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import yaml
from affine import Affine
from shapely.geometry import box

from pipeline.config import DateRange, SentinelHubSource, Windows, parse_config
from pipeline.errors import ConfigError, InputError
from pipeline.inputs.grid import make_cells
from pipeline.sources.local import LocalGeoTiffSource
from pipeline.sources.scene import ReadGrid
from pipeline.sources.sentinelhub import (
    LEDGER,
    SentinelHubImagery,
    plan_sentinelhub,
    processing_units,
    split_grid,
)
from pipeline.sources.sentinelhub_client import Pace, retry_after_s
from tests.conftest import ORIGIN, demo_config_via, run_leads, write_s2, write_scene_series
from tests.sources.sentinelhub_server import Faults, SentinelHubServer

GRID = ReadGrid("EPSG:32650", ORIGIN, 48, 48)
JULY_2024 = DateRange(start=date(2024, 7, 1), end=date(2024, 7, 31))
JULY_2025 = DateRange(start=date(2025, 7, 1), end=date(2025, 7, 31))
AOI = gpd.GeoSeries([box(*GRID.bounds)], crs=GRID.crs).to_crs("EPSG:4326").iloc[0]
DATES = ("2024-07-05", "2024-07-15", "2024-07-25", "2025-07-10", "2025-07-20")
SECRET = "s3cr3t-Test-Value-9f27c1"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Five small L2A files with varied pixels; a cloud over the top of the second."""
    return write_scene_series(tmp_path_factory.mktemp("sh_scenes"), DATES, seed=5)


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The test server's OAuth client in the environment; no sentinelhub-py configuration file of the user."""
    monkeypatch.setenv("SH_CLIENT_ID", "eoleads-test-client")
    monkeypatch.setenv("SH_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SH_PROFILE", raising=False)
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the loopback server speaks plain http


def _settings(server: SentinelHubServer, cache: Path, **kw) -> SentinelHubSource:
    return SentinelHubSource(type="sentinelhub", base_url=server.url, token_url=server.token_url, cache=cache,
                             retry_wait_s=kw.pop("retry_wait_s", 0.01), **kw)


def _assert_same(a, b) -> None:
    np.testing.assert_array_equal(a.reflectance, b.reflectance)  # NaN where unseen, in both
    np.testing.assert_array_equal(a.valid, b.valid)
    assert a.dates == b.dates


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file() and p.name != LEDGER)


def test_composites_equal_the_local_sources_and_a_second_read_fetches_nothing(scenes, tmp_path):
    local = LocalGeoTiffSource([str(f) for f in scenes])
    with SentinelHubServer(scenes) as server:
        first = SentinelHubImagery(_settings(server, tmp_path / "cache"), AOI)
        for window in (JULY_2024, JULY_2025):
            _assert_same(first.composite(GRID, window), local.composite(GRID, window))
        assert server.counts["process"] == len(DATES)  # one request per acquisition
        again = SentinelHubImagery(_settings(server, tmp_path / "cache"), AOI)
        for window in (JULY_2024, JULY_2025):
            _assert_same(again.composite(GRID, window), local.composite(GRID, window))
        assert server.counts["process"] == len(DATES)  # every acquisition came from the cache
    assert local.composite(GRID, JULY_2024).observations[:20].max() == 2  # the cloud was masked with SCL


def test_the_cache_filled_online_reads_offline_through_the_local_source(scenes, tmp_path):
    with SentinelHubServer(scenes) as server:
        online = SentinelHubImagery(_settings(server, tmp_path / "cache"), AOI)
        expected = [online.composite(GRID, w) for w in (JULY_2024, JULY_2025)]
    offline = LocalGeoTiffSource([str(tmp_path / "cache" / "*" / "*.tif")])
    for window, composite in zip((JULY_2024, JULY_2025), expected, strict=True):
        _assert_same(offline.composite(GRID, window), composite)


def test_a_grid_wider_than_2500_px_is_fetched_in_pieces_and_stitched(tmp_path):
    wide = ReadGrid("EPSG:32650", ORIGIN, 2600, 6)
    rng = np.random.default_rng(1)
    path = write_s2(tmp_path / "wide.tif", rng.uniform(0.02, 0.4, (6, 6, 2600)), "2024-07-09",
                    scl=np.full((6, 2600), 4))
    aoi = gpd.GeoSeries([box(*wide.bounds)], crs=wide.crs).to_crs("EPSG:4326").iloc[0]
    with SentinelHubServer([path]) as server:
        composite = SentinelHubImagery(_settings(server, tmp_path / "cache"), aoi).composite(wide, JULY_2024)
        assert server.counts["process"] == 2
    _assert_same(composite, LocalGeoTiffSource([str(path)]).composite(wide, JULY_2024))


def test_split_grid_tiles_exactly_within_the_limit():
    grid = ReadGrid("EPSG:32650", Affine(10, 0, 500000, 0, -10, 5430000), 5001, 2500)
    pieces = split_grid(grid)
    assert len(pieces) == 3 and all(g.width <= 2500 and g.height <= 2500 for _, _, g in pieces)
    assert sum(g.width * g.height for _, _, g in pieces) == grid.width * grid.height
    row, col, last = pieces[-1]
    assert (row, col) == (0, 3334) and last.transform.c == 500000 + 10 * 3334 and last.width == 1667
    assert len(split_grid(ReadGrid("EPSG:32650", ORIGIN, 1088, 1088))) == 1  # a 1024-px cell and its halo


def test_processing_units_follow_sentinel_hubs_definition():
    assert processing_units(512, 512, 3) == 1.0
    assert processing_units(1088, 1088) == pytest.approx(1088 * 1088 / 512**2 * 7 / 3)  # 6 bands + SCL
    assert processing_units(10, 10, 3) == 0.01  # the area factor is at least 0.01
    assert processing_units(10, 10, 1) == 0.005  # and a request at least 0.005


def test_retry_after_is_read_as_sentinel_hubs_milliseconds_or_an_http_date():
    assert retry_after_s({"Retry-After": "1500"}, default=9) == 1.5
    assert retry_after_s({}, default=9) == 9
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, default=9) == 0  # in the past
    assert retry_after_s({"Retry-After": "soon"}, default=9) == 9


def test_the_pace_waits_at_the_per_minute_limit_and_says_so(caplog):
    now, slept = [0.0], []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    pace = Pace(2, clock=lambda: now[0], sleep=sleep)
    with caplog.at_level(logging.WARNING):
        pace.wait()
        now[0] = 10.0
        pace.wait()
        pace.wait()  # a third within the minute waits for the first to age out
    assert slept == [50.0]
    assert "requests_per_minute = 2" in caplog.text
    now[0] = 200.0
    pace.wait()
    assert slept == [50.0]


def test_429_with_retry_after_pauses_then_recovers(scenes, tmp_path, caplog):
    with SentinelHubServer(scenes, faults=Faults(rate_limited=2, retry_after_ms=300)) as server:
        source = SentinelHubImagery(_settings(server, tmp_path / "cache"), AOI)
        with caplog.at_level(logging.WARNING):
            composite = source.composite(GRID, JULY_2025)
        gaps = np.diff(server.process_times[:3])
    assert composite.valid.all()
    assert server.counts["process"] == 2 + 2 and server.counts["process_served"] == 2
    assert (gaps >= 0.3).all()  # the client waited as long as the server asked, twice
    assert "pausing 0.3 s" in caplog.text


def test_a_429_storm_stops_with_the_fix_and_caches_nothing(scenes, tmp_path):
    with SentinelHubServer(scenes, faults=Faults(rate_limited=10_000, retry_after_ms=1)) as server:
        source = SentinelHubImagery(_settings(server, tmp_path / "cache"), AOI)
        with pytest.raises(InputError) as err:
            source.composite(GRID, JULY_2025)
    assert err.value.field == "source.requests_per_minute" and "429" in err.value.problem
    assert "run again later" in err.value.fix
    assert _cache_files(tmp_path / "cache") == []


def test_server_errors_and_a_dropped_download_are_retried(scenes, tmp_path):
    local = LocalGeoTiffSource([str(f) for f in scenes])
    with SentinelHubServer(scenes, faults=Faults(server_errors=2, dropped=1)) as server:
        source = SentinelHubImagery(_settings(server, tmp_path / "cache"), AOI)
        _assert_same(source.composite(GRID, JULY_2025), local.composite(GRID, JULY_2025))
        assert server.counts["process"] == 2 + 2 + 1 and server.counts["process_served"] == 2
    assert len(_cache_files(tmp_path / "cache")) == 2  # whole entries only, no partial file left


def test_persistent_server_errors_stop_with_the_fix_and_cache_nothing(scenes, tmp_path):
    with SentinelHubServer(scenes, faults=Faults(server_errors=10_000)) as server:
        source = SentinelHubImagery(_settings(server, tmp_path / "cache", attempts=3), AOI)
        with pytest.raises(InputError) as err:
            source.composite(GRID, JULY_2025)
        assert server.counts["process"] == 3
    assert "500" in err.value.problem and "run again later" in err.value.fix
    assert _cache_files(tmp_path / "cache") == []


def test_a_token_expiring_mid_run_is_renewed(scenes, tmp_path):
    local = LocalGeoTiffSource([str(f) for f in scenes])
    with SentinelHubServer(scenes, faults=Faults(expire_tokens_after=3)) as server:
        source = SentinelHubImagery(_settings(server, tmp_path / "cache"), AOI)
        for window in (JULY_2024, JULY_2025):
            _assert_same(source.composite(GRID, window), local.composite(GRID, window))
    assert server.counts["token"] == 2


def test_bad_credentials_name_the_fix_without_showing_the_secret(scenes, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SH_CLIENT_SECRET", "wrong-" + SECRET)
    with SentinelHubServer(scenes) as server, caplog.at_level(logging.DEBUG):
        with pytest.raises(InputError) as err:
            SentinelHubImagery(_settings(server, tmp_path / "cache"), AOI)
    assert err.value.field == "credentials" and "SH_CLIENT_SECRET" in err.value.fix
    assert SECRET not in str(err.value) and SECRET not in caplog.text


def test_missing_credentials_say_where_they_come_from(scenes, tmp_path, monkeypatch):
    monkeypatch.delenv("SH_CLIENT_SECRET")
    with SentinelHubServer(scenes) as server, pytest.raises(InputError) as err:
        SentinelHubImagery(_settings(server, tmp_path / "cache"), AOI)
    assert "SH_CLIENT_ID and SH_CLIENT_SECRET" in err.value.fix and "source.profile" in err.value.fix
    assert server.counts["token"] == 0


def test_an_unknown_sentinelhub_profile_is_named(scenes, tmp_path):
    with SentinelHubServer(scenes) as server, pytest.raises(InputError) as err:
        SentinelHubImagery(_settings(server, tmp_path / "cache", profile="no-such-profile"), AOI)
    assert err.value.field == "source.profile" and "no-such-profile" in err.value.problem


def test_credentials_in_the_run_configuration_are_refused_without_echoing_them(tmp_path):
    config = {"name": "x", "aoi": ["aoi.geojson"], "output": "out",
              "windows": {"baseline": {"start": "2024-07-01", "end": "2024-07-31"},
                          "monitoring": {"start": "2025-07-01", "end": "2025-07-31"}},
              "source": {"type": "sentinelhub", "client_id": "abc", "client_secret": SECRET}}
    with pytest.raises(ConfigError) as err:
        parse_config(config, tmp_path / "run.yaml")
    message = str(err.value)
    assert "client_secret" in message and "SH_CLIENT_SECRET" in message and SECRET not in message


def test_an_unknown_collection_is_named(scenes, tmp_path):
    with SentinelHubServer(scenes) as server, pytest.raises(InputError) as err:
        SentinelHubImagery(_settings(server, tmp_path / "cache", collection="sentinel-2-l3z"), AOI)
    assert err.value.field == "source.collection" and "sentinel-2-l3z" in err.value.problem
    assert "sentinel-2-l2a" in err.value.fix


def test_an_empty_search_is_an_error_not_a_blank_run(scenes, tmp_path):
    with SentinelHubServer(scenes) as server:
        source = SentinelHubImagery(_settings(server, tmp_path / "cache"), AOI)
        with pytest.raises(InputError) as err:
            source.composite(GRID, DateRange(start=date(2023, 7, 1), end=date(2023, 7, 31)))
    assert err.value.field == "windows" and "2023-07-01" in err.value.problem


def test_an_all_cloud_window_names_the_dates_and_their_cloud_cover(scenes, tmp_path):
    with SentinelHubServer(scenes) as server:
        source = SentinelHubImagery(_settings(server, tmp_path / "cache", max_cloud_cover=10), AOI)
        source.composite(GRID, JULY_2025)  # clear scenes pass the filter
        with pytest.raises(InputError) as err:
            source.composite(GRID, DateRange(start=date(2024, 7, 14), end=date(2024, 7, 16)))
    assert err.value.field == "source.max_cloud_cover"
    assert "2024-07-15 (31% cloud)" in err.value.problem and "10%" in err.value.problem  # 20 of 64 rows


def test_network_down_points_offline_users_to_the_local_source_and_a_carried_cache(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    settings = SentinelHubSource(type="sentinelhub", base_url=f"http://127.0.0.1:{port}",
                                 token_url=f"http://127.0.0.1:{port}/oauth/token", attempts=1, cache=tmp_path / "c")
    with pytest.raises(InputError) as err:
        SentinelHubImagery(settings, AOI)
    assert "cannot reach Sentinel Hub" in err.value.problem
    assert "type: local" in err.value.fix and "cache" in err.value.fix
    assert SECRET not in str(err.value)


def test_the_monthly_processing_unit_budget_stops_the_run_before_it_is_exceeded(scenes, tmp_path):
    per_request = processing_units(GRID.width, GRID.height)
    with SentinelHubServer(scenes) as server:
        settings = _settings(server, tmp_path / "cache", processing_units_per_month=2.5 * per_request)
        source = SentinelHubImagery(settings, AOI)
        with pytest.raises(InputError) as err:
            source.composite(GRID, JULY_2024)  # three acquisitions: the third would exceed the budget
        assert server.counts["process"] == 2
    assert err.value.field == "source.processing_units_per_month" and "resumes" in err.value.fix
    assert source.service.budget.spent() == pytest.approx(2 * per_request, abs=1e-3)
    assert len(_cache_files(tmp_path / "cache")) == 2


def test_the_plan_counts_requests_and_processing_units_without_fetching_imagery(scenes, tmp_path):
    cells = make_cells(AOI, 64, 10.0)
    windows = Windows(baseline=JULY_2024, monitoring=JULY_2025)
    with SentinelHubServer(scenes) as server:
        plan = plan_sentinelhub(_settings(server, tmp_path / "cache", processing_units_per_month=1000,
                                          requests_per_minute=30), AOI, cells, windows)
        assert server.counts["process"] == 0
    side = 64 + 2 * 32
    assert plan.scenes == 5 and plan.cells == len(cells)
    assert plan.requests == 5 * len(cells)  # every acquisition covers every cell
    assert plan.processing_units == pytest.approx(5 * len(cells) * processing_units(side, side), abs=0.01)
    assert plan.bytes == 5 * len(cells) * side * side * 8 * 2
    assert any("processing_units_per_month" in n for n in plan.notes)


def _demo_via(server: SentinelHubServer, demo_run: Path, out: Path, cache: Path) -> Path:
    return demo_config_via({"type": "sentinelhub", "base_url": server.url, "token_url": server.token_url,
                            "cache": str(cache), "requests_per_minute": 600, "processing_units_per_month": 10_000},
                           demo_run, out)


@pytest.mark.slow
def test_the_demo_through_sentinel_hub_gives_the_local_runs_leads_and_a_second_run_fetches_nothing(
        demo_run, tmp_path, caplog):
    from pipeline.config import load_config
    from pipeline.plan import plan_config
    from pipeline.run import run

    with SentinelHubServer(sorted((demo_run / "inputs" / "imagery").glob("*.tif"))) as server:
        planned = plan_config(load_config(_demo_via(server, demo_run, tmp_path / "plan", tmp_path / "cache")))
        with caplog.at_level(logging.DEBUG):
            for name in ("first", "second"):
                path = _demo_via(server, demo_run, tmp_path / name, tmp_path / "cache")
                run(load_config(path), path, progress=False)
                if name == "first":
                    fetched = server.counts["process"]
    assert fetched > 0 and server.counts["process"] == fetched  # the second run read everything from the cache
    cell_side = 512 + 2 * 32
    assert planned.requests == server.process_sizes.count((cell_side, cell_side))  # the rest: evidence images
    reference = run_leads(demo_run)
    assert len(reference) > 0
    for name in ("first", "second"):
        leads = run_leads(tmp_path / name)
        assert list(leads.category) == list(reference.category) and list(leads.reason) == list(reference.reason)
        assert leads.geometry.geom_equals_exact(reference.geometry, tolerance=1e-9).all()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not [p for p in written if SECRET.encode() in p.read_bytes()]
    assert SECRET not in caplog.text


def test_a_hulunbuir_sized_plan_searches_the_catalog_only(scenes, tmp_path):
    from pipeline.config import load_config
    from pipeline.plan import format_plan, plan_config

    aoi = tmp_path / "hulunbuir.geojson"
    gpd.GeoDataFrame(geometry=[box(115.5, 47.0, 126.1, 53.4)], crs="EPSG:4326").to_file(aoi, driver="GeoJSON")
    with SentinelHubServer(scenes) as server:
        config = {"name": "hulunbuir", "aoi": [str(aoi)], "output": str(tmp_path / "out"),
                  "windows": {"baseline": {"start": "2024-07-01", "end": "2024-07-31"},
                              "monitoring": {"start": "2025-07-01", "end": "2025-07-31"}},
                  "source": {"type": "sentinelhub", "base_url": server.url, "token_url": server.token_url,
                             "processing_units_per_month": 30_000}}
        path = tmp_path / "hulunbuir.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        plan = plan_config(load_config(path))
        assert server.counts["process"] == 0
    text = format_plan(plan)
    assert plan.cells > 10_000 and plan.scenes == 5 and "processing units" in text
