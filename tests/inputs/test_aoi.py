import geopandas as gpd
import pytest
from shapely.geometry import LineString, Polygon, box

from pipeline.errors import InputError
from pipeline.inputs.aoi import read_aoi


def _save(gdf: gpd.GeoDataFrame, path):
    gdf.to_file(path, engine="pyogrio")
    return path


def test_self_intersecting_aoi_is_repaired_and_reported(tmp_path):
    bowtie = Polygon([(117.0, 49.0), (117.2, 49.2), (117.2, 49.0), (117.0, 49.2)])
    assert not bowtie.is_valid
    path = _save(gpd.GeoDataFrame(geometry=[bowtie], crs="EPSG:4326"), tmp_path / "bowtie.geojson")
    aoi = read_aoi([path])
    assert aoi.geometry.is_valid
    assert aoi.geometry.area == pytest.approx(0.02, rel=1e-6)  # the two triangles, 0.1 x 0.2 / 2 each
    assert any("repaired 1 invalid geometry" in n and "bowtie.geojson" in n for n in aoi.notes)


def test_aoi_in_another_crs_is_read_in_wgs84(tmp_path):
    wgs = box(117.5, 48.9, 117.7, 49.0)
    utm = gpd.GeoDataFrame(geometry=[wgs], crs="EPSG:4326").to_crs("EPSG:32650")
    path = _save(utm, tmp_path / "aoi_utm.gpkg")
    aoi = read_aoi([path])
    assert aoi.features.crs.to_epsg() == 4326
    assert aoi.geometry.symmetric_difference(wgs).area < 1e-6 * wgs.area


def test_cgcs2000_shapefile_is_read(tmp_path):
    path = _save(gpd.GeoDataFrame(geometry=[box(117.5, 48.9, 117.7, 49.0)], crs="EPSG:4490"), tmp_path / "aoi.shp")
    assert read_aoi([path]).geometry.bounds == pytest.approx((117.5, 48.9, 117.7, 49.0), abs=1e-6)


def test_empty_aoi_is_a_clear_error(tmp_path):
    path = _save(gpd.GeoDataFrame(geometry=[LineString([(117, 49), (118, 49)])], crs="EPSG:4326"),
                 tmp_path / "line.geojson")
    with pytest.raises(InputError) as err:
        read_aoi([path])
    assert "line.geojson" in str(err.value)
    assert "no polygon with an area" in str(err.value)


def test_missing_file_and_missing_crs(tmp_path):
    with pytest.raises(InputError, match="AOI file not found"):
        read_aoi([tmp_path / "nope.geojson"])
    path = _save(gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:4326"), tmp_path / "noprj.shp")
    (tmp_path / "noprj.prj").unlink()
    with pytest.raises(InputError, match="no coordinate reference system"):
        read_aoi([path])


def test_aoi_without_gauss_krueger_zone_prefix_names_the_cause(tmp_path):
    gk = gpd.GeoSeries([box(117.5, 48.9, 117.7, 49.0)], crs="EPSG:4326").to_crs("EPSG:4527")  # zone 39
    path = _save(gpd.GeoDataFrame(geometry=gk.translate(xoff=-39_000_000), crs="EPSG:4527"), tmp_path / "aoi.gpkg")
    with pytest.raises(InputError) as err:
        read_aoi([path])
    assert err.value.path == path and err.value.field == "crs"
    assert "impossible coordinates" in err.value.problem and "lack the zone prefix 39" in err.value.problem
    assert "EPSG:4548" in err.value.fix


def test_aoi_with_swapped_axes_names_the_cause(tmp_path):
    swapped = Polygon([(48.9, 117.5), (48.9, 117.7), (49.0, 117.7), (49.0, 117.5)])  # latitude first
    path = _save(gpd.GeoDataFrame(geometry=[swapped], crs="EPSG:4490"), tmp_path / "aoi.geojson")
    with pytest.raises(InputError, match="x and y are swapped: the first coordinate must be the longitude"):
        read_aoi([path])
