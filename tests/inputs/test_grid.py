import geopandas as gpd
import pytest
import shapely
from shapely.geometry import Polygon, box

from pipeline.config import Limits
from pipeline.errors import ConfigError
from pipeline.inputs.grid import make_cells, plan_grid, utm_epsg

#: The bounding box of Hulunbuir (呼伦贝尔): about 540,000 km², twice its area, in three UTM zones.
HULUNBUIR = box(115.5, 47.0, 126.1, 53.4)


def _area_m2(geoms, crs):
    return gpd.GeoSeries(geoms, crs=crs).to_crs("EPSG:6933").area.sum()


def test_utm_zone_of_hulunbuir_points():
    assert utm_epsg(117.4, 48.95) == 32650  # Hulun Lake
    assert utm_epsg(122.7, 48.0) == 32651  # Zalantun
    assert utm_epsg(-70.0, -33.0) == 32719


def test_aoi_across_zones_50_and_51_is_split_at_the_meridian():
    aoi = box(119.9, 49.0, 120.1, 49.1)
    cells = make_cells(aoi, cell_size_px=256, resolution=10.0)
    assert {c.epsg for c in cells} == {32650, 32651}
    covered = sum(_area_m2([c.aoi_part], c.crs) for c in cells)
    assert covered == pytest.approx(_area_m2([aoi], "EPSG:4326"), rel=2e-3)
    for c in cells:
        assert c.geometry.buffer(1e-6).contains(c.aoi_part)
        assert c.bounds[0] % 2560 == 0 and c.bounds[1] % 2560 == 0


def test_cells_are_stable_and_unique():
    aoi = box(117.70, 48.95, 117.80, 49.00)
    first = make_cells(aoi, 512, 10.0)
    second = make_cells(box(117.69, 48.94, 117.81, 49.01), 512, 10.0)
    assert len({c.id for c in first}) == len(first)
    assert {c.id for c in first} <= {c.id for c in second}
    one = next(iter(first))
    assert one.transform(32).c == one.bounds[0] - 320


def test_a_hulunbuir_sized_aoi_is_planned_without_making_a_cell():
    plan = plan_grid(HULUNBUIR, 512, 10.0)
    assert set(plan.cells_per_zone) == {32650, 32651, 32652}
    assert plan.area_km2 == pytest.approx(_area_m2([HULUNBUIR], "EPSG:4326") / 1e6, rel=2e-3)
    assert 20_000 < plan.cells < 25_000 and plan.pixels == plan.cells * 512 * 512
    Limits().check(plan, None)  # the defaults allow it
    summary = plan.summary()
    for figure in (f"{plan.area_km2:,.0f} km²", f"{plan.cells:,} cells", "EPSG:32651 ", "GB of imagery per date"):
        assert figure in summary


def test_an_absurd_resolution_is_counted_by_arithmetic():
    plan = plan_grid(HULUNBUIR, 512, 0.000001)  # would be 1e18 cells: made one by one, this never returns
    assert plan.cells > 10**18
    with pytest.raises(ConfigError, match=r"limits\.max_cells") as err:
        Limits().check(plan, "run.yaml")
    assert "run.yaml" in str(err.value) and "raise it in the configuration" in str(err.value)


def test_the_plan_never_counts_fewer_cells_than_are_made():
    diagonal = Polygon([(119.5, 48.5), (120.5, 49.5), (120.45, 49.55), (119.45, 48.55)])  # across 50N/51N
    for aoi in (diagonal, box(119.9, 49.0, 120.1, 49.1)):
        cells = make_cells(aoi, 256, 10.0)
        plan = plan_grid(aoi, 256, 10.0)
        for epsg, planned in plan.cells_per_zone.items():
            assert planned >= sum(c.epsg == epsg for c in cells) > 0


def test_make_cells_on_a_hulunbuir_sized_aoi_covers_it_once():
    cells = make_cells(HULUNBUIR, 512, 10.0)
    assert len({c.id for c in cells}) == len(cells) <= plan_grid(HULUNBUIR, 512, 10.0).cells
    assert sum(c.aoi_part.area for c in cells) / 1e6 == pytest.approx(plan_grid(HULUNBUIR).area_km2, rel=1e-9)
    inner = [c for c in cells if c.aoi_part.area == c.geometry.area]
    assert len(inner) > 0.9 * len(cells)  # the inner cells are whole squares
    assert all(shapely.equals(c.aoi_part, c.geometry) for c in inner[:100])
