"""Permit inputs that used to pass silently: misplaced coordinates, ambiguous dates, duplicates, GBK text."""

from datetime import date, datetime

import geopandas as gpd
import numpy as np
import pytest
import shapely
import yaml
from shapely import affinity
from shapely.geometry import box

from pipeline.cli import main
from pipeline.config import PermitLayer
from pipeline.errors import InputError
from pipeline.inputs.permits import load_permits
from tests.conftest import write_s2

AOI = box(117.4, 48.9, 117.7, 49.1)  # WGS84
PLACES = [box(117.50 + 0.02 * i, 49.00, 117.51 + 0.02 * i, 49.01) for i in range(4)]  # inside the AOI
GK39 = "EPSG:4527"  # CGCS2000 / 3-degree Gauss-Kruger zone 39: eastings carry the prefix 39


def _write(path, ids, geoms, crs="EPSG:4490", **columns):
    """A permit register with the normalised column names, valid dates and the given geometries."""
    n = len(ids)
    data = {"permit_id": ids, "permit_type": ["mining"] * n, "valid_from": ["2024-01-01"] * n,
            "valid_to": ["2026-12-31"] * n, **columns}
    gpd.GeoDataFrame(data, geometry=list(geoms), crs=crs).to_file(path, engine="pyogrio")
    return path


def _swap(geom):
    return shapely.transform(geom, lambda xy: xy[:, ::-1])


def _gk(geoms):
    return gpd.GeoSeries(geoms, crs="EPSG:4326").to_crs(GK39)


def _load(path, **options):
    return load_permits([PermitLayer(path=path, **options)], AOI)


def test_correct_gauss_krueger_register_is_read(tmp_path):
    permits = _load(_write(tmp_path / "gk.gpkg", ["A1", "A2"], _gk(PLACES[:2]), crs=GK39))
    assert shapely.area(shapely.symmetric_difference(permits.table.geometry.values, PLACES[:2])).max() < 1e-9
    assert not permits.notes


def test_eastings_without_zone_prefix_are_refused_with_the_cause(tmp_path):
    stripped = _gk(PLACES).translate(xoff=-39_000_000)  # the zone prefix 39 left off, still labelled zone 39
    path = _write(tmp_path / "许可.gpkg", ["A1", "A2", "A3", "A4"], stripped, crs=GK39)
    with pytest.raises(InputError) as err:
        _load(path)
    assert err.value.path == path and err.value.field == "geometry"
    assert "4 of 4 permits" in err.value.problem and "A1" in err.value.problem
    assert "lack the zone prefix 39" in err.value.problem
    assert "EPSG:4548" in err.value.fix  # the matching CRS without prefix (CM 117E)


def test_swapped_axes_are_refused_with_the_cause(tmp_path):
    path = _write(tmp_path / "swapped.gpkg", ["A1", "A2"], [_swap(g) for g in PLACES[:2]])
    with pytest.raises(InputError, match="x and y are swapped") as err:
        _load(path)
    assert "Swap X and Y" in err.value.fix


def test_projected_coordinates_labelled_as_degrees_name_the_likely_crs(tmp_path):
    metres = gpd.GeoSeries(PLACES[:2], crs="EPSG:4326").to_crs("EPSG:4548")  # CM 117E, no prefix
    path = _write(tmp_path / "wrong_prj.gpkg", ["A1", "A2"], metres, crs="EPSG:4490")
    with pytest.raises(InputError, match="metres in a projected CRS") as err:
        _load(path)
    assert "EPSG:4548" in err.value.fix


def test_a_register_of_another_region_is_refused(tmp_path):
    far = [affinity.translate(g, xoff=8) for g in PLACES[:3]]  # about 580 km east
    with pytest.raises(InputError, match=r"3 of 3 permits .* more than 150 km from the AOI") as err:
        _load(_write(tmp_path / "elsewhere.gpkg", ["A1", "A2", "A3"], far))
    assert "clipped" in err.value.fix


def test_a_few_stray_permits_are_dropped_and_named(tmp_path):
    geoms = [*PLACES[:3], _swap(PLACES[3]), affinity.translate(PLACES[0], xoff=5)]
    permits = _load(_write(tmp_path / "p.gpkg", ["A1", "A2", "A3", "BAD1", "FAR1"], geoms))
    assert permits.table.permit_id.tolist() == ["A1", "A2", "A3"]
    note = next(n for n in permits.notes if "dropped 2 permit(s)" in n)
    assert "BAD1 (impossible coordinates)" in note and "FAR1 (3" in note  # about 365 km away
    assert np.isfinite(permits.table.total_bounds).all()


def test_repaired_and_dropped_features_are_named_by_permit_id(tmp_path):
    bowtie = shapely.Polygon([(117.5, 49.0), (117.51, 49.01), (117.51, 49.0), (117.5, 49.01)])
    line = shapely.LineString([(117.5, 49.0), (117.51, 49.01)])
    permits = _load(_write(tmp_path / "p.gpkg", ["OK1", "BOW1", "LINE1"], [PLACES[0], bowtie, line]))
    assert any("repaired 1 invalid geometry (ids BOW1)" in n for n in permits.notes)
    assert any("dropped 1 empty or non-polygon feature(s) (ids LINE1)" in n for n in permits.notes)


def test_ambiguous_dates_are_refused_until_the_order_is_declared(tmp_path):
    path = _write(tmp_path / "p.gpkg", ["A1", "A2"], PLACES[:2], valid_from=["01/04/2020", "25/04/2020"],
                  valid_to=["31/12/2026", "31/12/2026"])
    with pytest.raises(InputError) as err:
        _load(path)
    assert err.value.field == "permits[0].date_order"
    assert "A1 valid_from '01/04/2020'" in err.value.problem and "A2" not in err.value.problem
    assert "DMY" in err.value.fix
    table = _load(path, date_order="DMY").table
    assert table.valid_from.tolist() == [date(2020, 4, 1), date(2020, 4, 25)]
    assert table.valid_to.tolist() == [date(2026, 12, 31)] * 2


def test_two_digit_years_are_refused(tmp_path):
    path = _write(tmp_path / "p.gpkg", ["A1"], PLACES[:1], valid_to=["1/2/3"])
    with pytest.raises(InputError, match=r"A1 valid_to '1/2/3' \(the year is not written in full\)") as err:
        _load(path, date_order="DMY")
    assert "four digits" in err.value.fix


def test_excel_serial_and_datetime_fields_are_read(tmp_path):
    path = _write(tmp_path / "p.gpkg", ["A1", "A2"], PLACES[:2], valid_from=[datetime(2023, 1, 1, 9, 30), None],
                  valid_to=[44927.0, 46022.0])
    table = _load(path).table
    assert table.valid_from.tolist() == [date(2023, 1, 1), None]
    assert table.valid_to.tolist() == [date(2023, 1, 1), date(2025, 12, 31)]
    assert table.issues.tolist() == ["", "valid_from missing"]


def test_identical_duplicates_are_merged_with_a_note(tmp_path):
    permits = _load(_write(tmp_path / "p.gpkg", ["A1", "A1", "A2"], [PLACES[0], PLACES[0], PLACES[1]]))
    assert permits.table.permit_id.tolist() == ["A1", "A2"]
    assert any("permit A1 is listed 2 times identically" in n for n in permits.notes)


def test_parcels_of_one_permit_are_joined(tmp_path):
    permits = _load(_write(tmp_path / "p.gpkg", ["A1", "A1"], PLACES[:2]))
    assert len(permits.table) == 1
    assert permits.table.geometry.iloc[0].area == pytest.approx(PLACES[0].area + PLACES[1].area)
    assert any("one permit of several parcels" in n for n in permits.notes)


def test_conflicting_duplicates_are_refused_naming_the_fields(tmp_path):
    path = _write(tmp_path / "p.gpkg", ["A1", "A1"], PLACES[:2], valid_to=["2026-12-31", "2027-06-30"])
    with pytest.raises(InputError) as err:
        _load(path)
    assert err.value.field == "permits[0].columns.permit_id"
    assert "'A1' appears 2 times with different valid_to" in err.value.problem
    assert "2026-12-31" in err.value.problem and "2027-06-30" in err.value.problem


def test_conflicting_duplicates_across_layers_name_both_files(tmp_path):
    first = _write(tmp_path / "a.gpkg", ["A1"], PLACES[:1])
    second = _write(tmp_path / "b.gpkg", ["A1"], PLACES[:1], permit_type=["construction"])
    with pytest.raises(InputError, match=r"different permit_type \(permit_type: mining \(a.gpkg\), "
                                         r"construction \(b.gpkg\)\)"):
        load_permits([PermitLayer(path=first), PermitLayer(path=second)], AOI)


def _gbk_shapefile(tmp_path):
    """A Shapefile written in GBK by a Chinese GIS, with Chinese column names and values and no .cpg."""
    gdf = gpd.GeoDataFrame({"许可证号": ["采矿A1", "采矿A2"], "许可类型": ["采矿许可", "临时用地"],
                            "持有人": ["内蒙古矿业", "呼伦贝尔"], "批准日期": ["2024-01-01"] * 2,
                            "有效期至": ["2026-12-31"] * 2}, geometry=PLACES[:2], crs="EPSG:4490")
    path = tmp_path / "许可.shp"
    gdf.to_file(path, engine="pyogrio", encoding="GBK")
    path.with_suffix(".cpg").unlink()
    return path


GBK_COLUMNS = {"permit_id": "许可证号", "permit_type": "许可类型", "holder": "持有人", "valid_from": "批准日期",
               "valid_to": "有效期至"}
GBK_TYPES = {"采矿许可": "mining", "临时用地": "temporary_land"}


def test_gbk_shapefile_without_cpg_asks_for_the_encoding(tmp_path):
    path = _gbk_shapefile(tmp_path)
    with pytest.raises(InputError) as err:
        _load(path, columns=GBK_COLUMNS, type_values=GBK_TYPES)
    assert err.value.field == "permits[0].encoding"
    assert "garbled" in err.value.problem and "in GBK" in err.value.problem
    assert "encoding: GBK" in err.value.fix
    table = _load(path, columns=GBK_COLUMNS, type_values=GBK_TYPES, encoding="GBK").table
    assert table.permit_id.tolist() == ["采矿A1", "采矿A2"]
    assert table.holder.tolist() == ["内蒙古矿业", "呼伦贝尔"]
    assert table.permit_type.tolist() == ["mining", "temporary_land"]


def test_gbk_shapefile_declared_utf8_asks_for_the_encoding(tmp_path):
    path = _gbk_shapefile(tmp_path)
    path.with_suffix(".cpg").write_text("UTF-8")
    with pytest.raises(InputError, match="cannot be decoded as utf-8") as err:
        _load(path, columns=GBK_COLUMNS, type_values=GBK_TYPES)
    assert "encoding: GBK" in err.value.fix


def test_unknown_encoding_is_a_config_error():
    with pytest.raises(ValueError, match="unknown encoding 'GBKK'"):
        PermitLayer(path="p.shp", encoding="GBKK")


def test_cli_stops_on_misplaced_permits_with_exit_2_and_no_traceback(tmp_path, capsys):
    write_s2(tmp_path / "s2.tif", np.full((6, 8, 8), 0.2), "2024-07-10")
    gpd.GeoDataFrame(geometry=[AOI], crs="EPSG:4326").to_file(tmp_path / "aoi.geojson")
    _write(tmp_path / "permits.gpkg", ["A1", "A2"], _gk(PLACES[:2]).translate(xoff=-39_000_000), crs=GK39)
    config = {"name": "t", "aoi": ["aoi.geojson"], "output": "out", "permits": [{"path": "permits.gpkg"}],
              "source": {"type": "local", "paths": ["s2.tif"]},
              "windows": {"baseline": {"start": "2024-07-01", "end": "2024-08-31"},
                          "monitoring": {"start": "2025-07-01", "end": "2025-08-31"}}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["run", str(tmp_path / "run.yaml"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "permits.gpkg" in err and "lack the zone prefix 39" in err and "fix:" in err
    assert "Traceback" not in err


def test_a_layer_without_polygons_is_refused_and_an_empty_one_noted(tmp_path):
    line = shapely.LineString([(117.5, 49.0), (117.51, 49.01)])
    with pytest.raises(InputError, match="no polygon with an area"):
        _load(_write(tmp_path / "lines.gpkg", ["L1"], [line]))
    empty = _load(_write(tmp_path / "empty.gpkg", [], []))
    assert empty.table.empty and empty.notes == ["empty.gpkg: the permit layer holds no permits"]
