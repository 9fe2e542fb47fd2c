import geopandas as gpd
import pytest
from shapely.geometry import box

from pipeline.inputs.grid import make_cells, utm_epsg


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
