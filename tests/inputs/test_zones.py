import geopandas as gpd
import numpy as np
import pytest
import shapely
import yaml
from affine import Affine
from shapely.geometry import box

from detectors.categories import Zone
from pipeline.config import ZoneLayer
from pipeline.errors import InputError
from pipeline.inputs.zones import load_zones
from pipeline.sources.scene import ReadGrid


def test_categories_without_their_zone_are_switched_off_or_read_from_the_image():
    zones = load_zones([], ["river", "forest", "lake", "mine"])
    assert zones.switched_off == {"river"}
    assert set(zones.polygons) == {Zone.LAKE}  # the shipped protection zone
    assert any("'river' was not run" in n for n in zones.notes)
    assert any("'forest' applies wherever" in n for n in zones.notes)


def _layer(tmp_path, values):
    utm = [box(500000 + 100 * i, 5429000, 500100 + 100 * i, 5430000) for i in range(len(values))]
    path = tmp_path / "zones.gpkg"
    gpd.GeoDataFrame({"类型": values}, geometry=utm, crs="EPSG:32650").to_crs("EPSG:4490").to_file(path)
    return path


def test_zone_column_with_mapped_values_is_rasterised_on_the_grid(tmp_path):
    path = _layer(tmp_path, ["河道", "林地"])
    zones = load_zones([ZoneLayer(path=path, column="类型", values={"河道": "river", "林地": "forest"})],
                       ["river", "forest"])
    assert zones.switched_off == set()
    masks = zones.masks(ReadGrid("EPSG:32650", Affine(10, 0, 500000, 0, -10, 5430000), 20, 5))
    assert masks[Zone.RIVER][:, :10].all() and not masks[Zone.RIVER][:, 10:].any()
    assert masks[Zone.FOREST][:, 10:].all() and not masks[Zone.FOREST][:, :10].any()
    assert np.count_nonzero(masks[Zone.FOREST]) == 50


def test_unknown_zone_value_and_missing_column_are_clear_errors(tmp_path):
    path = _layer(tmp_path, ["河道"])
    with pytest.raises(InputError, match="value '河道' is not a zone"):
        load_zones([ZoneLayer(path=path, column="类型")], ["river"])
    with pytest.raises(InputError, match="column not found in the layer"):
        load_zones([ZoneLayer(path=path, column="zone")], ["river"])


def test_missing_mining_district_is_noted():
    zones = load_zones([], ["mine"])
    assert any("'mining_district' zone supplied: dark (coal-like) surfaces" in n for n in zones.notes)


def test_a_baseline_for_no_category_scores_nothing():
    from detectors.baseline import SpectralBaseline

    b = np.full((1, 6, 4, 4), 0.2, dtype=np.float32)
    a = np.full((1, 6, 4, 4), 0.05, dtype=np.float32)
    probs = SpectralBaseline([]).predict(b, a, np.ones((1, 4, 4), dtype=bool), {})
    assert not probs.any()


# Land-survey layers (三调): zones by land-class code, read without filtering.

AOI = box(116.9, 48.9, 117.2, 49.1)  # WGS84, around the strips below (UTM 50N easting 500000 is 117°E)
SURVEY = [("0101", "水田"), ("0301", "乔木林地"), ("0402", "沼泽草地"), ("1101", "河流水面"), ("1102", "湖泊水面"),
          ("0602", "采矿用地"), ("0701", "城镇住宅用地"), ("1201", "空闲地"), ("0701", "城镇住宅用地")]
GRID = ReadGrid("EPSG:32650", Affine(10, 0, 500000, 0, -10, 5430000), 10 * len(SURVEY), 5)


def strips(n):
    """n parcels side by side, 100 m wide and 1 km high, in UTM 50N."""
    return [box(500000 + 100 * i, 5429000, 500100 + 100 * i, 5430000) for i in range(n)]


def write_survey(path, rows=SURVEY, crs="EPSG:4490", geoms=None, **options):
    """A land survey layer as a GIS office exports it: DLBM and DLMC columns, every class, CGCS2000."""
    geoms = (gpd.GeoSeries(strips(len(rows)), crs="EPSG:32650") if geoms is None else geoms).to_crs(crs)
    gdf = gpd.GeoDataFrame({"BSM": [f"15070{i}" for i in range(len(rows))], "DLBM": [c for c, _ in rows],
                            "DLMC": [n for _, n in rows]}, geometry=geoms.values, crs=crs)
    gdf.to_file(path, engine="pyogrio", **options)
    return path


def test_land_survey_gives_zones_by_code_and_counts_the_rest(tmp_path):
    layer = ZoneLayer(path=write_survey(tmp_path / "三调.gpkg"), land_survey=True)
    zones = load_zones([layer], ["black_soil", "forest", "wetland", "river", "lake", "mine"], AOI)
    assert set(zones.polygons) == {Zone.BLACK_SOIL, Zone.FOREST, Zone.WETLAND, Zone.RIVER, Zone.LAKE,
                                   Zone.MINING_DISTRICT}
    assert zones.switched_off == set()
    masks = zones.masks(GRID)
    for i, zone in enumerate([Zone.BLACK_SOIL, Zone.FOREST, Zone.WETLAND, Zone.RIVER]):
        assert masks[zone][:, 10 * i:10 * i + 10].all() and masks[zone].sum() == 50, zone
    assert masks[Zone.MINING_DISTRICT][:, 50:60].all() and masks[Zone.MINING_DISTRICT].sum() == 50
    assert any("3 parcel(s) give no zone and are ignored, by code: 0701 城镇住宅用地 2, 1201 空闲地 1" in n
               for n in zones.notes)
    assert any("forest 1 parcel(s)" in n and "wetland 1 parcel(s)" in n for n in zones.notes)
    assert any("cropland (01 耕地) is read as black-soil cropland" in n for n in zones.notes)
    # the lake surface (1102) has no shore: the shipped protection zone is added to it
    assert any("water surfaces without their shore, adding the approximate" in n for n in zones.notes)
    assert zones.land_classes.dlbm.tolist() == [c for c, _ in SURVEY]
    assert zones.land_classes.dlmc.tolist() == [n for _, n in SURVEY]


def test_configured_codes_override_the_built_in_table_by_longest_prefix(tmp_path):
    layer = ZoneLayer(path=write_survey(tmp_path / "survey.gpkg"), land_survey=True,
                      codes={"01": None, "04": None, "12": "mining_district", "1201": "mining_district"})
    zones = load_zones([layer], ["black_soil", "wetland", "mine"], AOI)
    assert Zone.BLACK_SOIL not in zones.polygons and "black_soil" in zones.switched_off
    masks = zones.masks(GRID)
    assert masks[Zone.WETLAND][:, 20:30].all() and masks[Zone.WETLAND].sum() == 50  # 0402 is longer than 04
    assert masks[Zone.MINING_DISTRICT][:, 50:60].all() and masks[Zone.MINING_DISTRICT][:, 70:80].all()
    assert masks[Zone.MINING_DISTRICT].sum() == 100
    assert not any("black-soil cropland" in n for n in zones.notes)
    again = load_zones([ZoneLayer(path=layer.path, land_survey=True, codes={"0402": "grassland"})],
                       ["grassland", "wetland"], AOI)
    assert again.masks(GRID)[Zone.GRASSLAND].sum() == 50 and Zone.WETLAND not in again.polygons


def test_lower_case_columns_numeric_codes_and_names_from_the_table(tmp_path):
    gdf = gpd.GeoDataFrame({"dlbm": [301, 1101, 701]}, geometry=strips(3), crs="EPSG:32650")
    path = tmp_path / "numeric.shp"
    gdf.to_file(path, engine="pyogrio")
    zones = load_zones([ZoneLayer(path=path, land_survey=True)], ["forest", "river"], AOI)
    assert zones.land_classes.dlbm.tolist() == ["0301", "1101", "0701"]  # leading zero restored
    assert zones.land_classes.dlmc.tolist() == ["乔木林地", "河流水面", "城镇住宅用地"]  # no DLMC column
    assert set(zones.polygons) == {Zone.FOREST, Zone.RIVER}


def test_a_column_without_codes_or_a_missing_column_is_refused(tmp_path):
    path = write_survey(tmp_path / "survey.gpkg")
    with pytest.raises(InputError, match="column 'DLMC' holds no land-class code") as err:
        load_zones([ZoneLayer(path=path, land_survey=True, code_column="DLMC")], ["forest"], AOI)
    assert err.value.field == "zones[0].code_column"
    with pytest.raises(InputError, match=r"column not found in the layer \(it has: BSM, DLBM, DLMC\)") as err:
        load_zones([ZoneLayer(path=path, land_survey=True, name_column="地类名称")], ["forest"], AOI)
    assert err.value.field == "zones[0].name_column (地类名称)"


def test_gbk_land_survey_shapefile_without_cpg_asks_for_the_encoding(tmp_path):
    path = write_survey(tmp_path / "三调.shp", encoding="GBK")
    path.with_suffix(".cpg").unlink()
    with pytest.raises(InputError, match="looks garbled") as err:
        load_zones([ZoneLayer(path=path, land_survey=True)], ["forest"], AOI)
    assert err.value.field == "zones[0].encoding" and "encoding: GBK" in err.value.fix
    zones = load_zones([ZoneLayer(path=path, land_survey=True, encoding="GBK")], ["forest"], AOI)
    assert zones.land_classes.dlmc.tolist() == [n for _, n in SURVEY]
    assert zones.masks(GRID)[Zone.FOREST].sum() == 50


def test_zone_layer_without_its_zone_prefix_is_refused_with_the_cause(tmp_path):
    gk = gpd.GeoSeries(strips(3), crs="EPSG:32650").to_crs("EPSG:4527").translate(xoff=-39_000_000)
    gdf = gpd.GeoDataFrame({"DLBM": ["0301", "0404", "1101"]}, geometry=gk.values, crs="EPSG:4527")
    gdf.to_file(tmp_path / "gk.gpkg", engine="pyogrio")
    with pytest.raises(InputError, match="none of the layer's 3 zone features lies within 150 km") as err:
        load_zones([ZoneLayer(path=tmp_path / "gk.gpkg", land_survey=True)], ["forest"], AOI)
    assert "lack the zone prefix 39" in err.value.problem and err.value.field == "geometry"


def test_zone_layer_of_another_region_is_refused_and_far_parcels_are_kept(tmp_path):
    far = gpd.GeoSeries(strips(2), crs="EPSG:32650").translate(xoff=600_000)  # about 800 km east
    path = write_survey(tmp_path / "far.gpkg", SURVEY[:2], geoms=far)
    with pytest.raises(InputError, match=r"within 150 km of the AOI .*\(the nearest is \d+ km away\)") as err:
        load_zones([ZoneLayer(path=path, land_survey=True)], ["forest"], AOI)
    assert "another region" in err.value.fix
    wide = write_survey(tmp_path / "wide.gpkg", SURVEY[:2], geoms=gpd.GeoSeries([strips(1)[0], far.iloc[1]],
                                                                                 crs="EPSG:32650"))
    assert len(load_zones([ZoneLayer(path=wide, land_survey=True)], ["forest"], AOI).land_classes) == 2


def test_swapped_coordinates_are_refused_without_an_aoi(tmp_path):
    swapped = gpd.GeoSeries(strips(3), crs="EPSG:32650").to_crs("EPSG:4490").map(
        lambda g: shapely.transform(g, lambda xy: xy[:, ::-1]))
    path = write_survey(tmp_path / "swapped.gpkg", SURVEY[:3], geoms=swapped)  # still labelled CGCS2000
    with pytest.raises(InputError, match="x and y are swapped"):
        load_zones([ZoneLayer(path=path, land_survey=True)], ["forest"])  # as `eoleads detect` reads zones


def test_unquoted_codes_in_yaml_are_refused_with_the_reason():
    data = yaml.safe_load("path: survey.gpkg\nland_survey: true\ncodes: {0101: black_soil}\n")
    with pytest.raises(ValueError, match=r"in quotes .* \(here 65\)"):
        ZoneLayer.model_validate(data)
    with pytest.raises(ValueError, match="codes only apply with 'land_survey: true'"):
        ZoneLayer(path="z.gpkg", zone="forest", codes={"03": "forest"})
    assert ZoneLayer(path="s.gpkg", land_survey=True, codes={" 0301k ": "forest"}).codes == {"0301K": Zone.FOREST}


def test_a_stray_parcel_is_dropped_and_named_and_an_empty_survey_refused(tmp_path):
    good = gpd.GeoSeries(strips(3), crs="EPSG:32650").to_crs("EPSG:4490")
    stray = shapely.transform(good.iloc[0], lambda xy: xy[:, ::-1])  # latitude 117: off Earth
    path = write_survey(tmp_path / "survey.gpkg", SURVEY[:4], geoms=gpd.GeoSeries([*good, stray], crs="EPSG:4490"))
    zones = load_zones([ZoneLayer(path=path, land_survey=True)], ["forest"], AOI)
    assert zones.land_classes.dlbm.tolist() == ["0101", "0301", "0402"]
    assert any("dropped 1 zone feature(s) with impossible coordinates" in n and "rows [3]" in n for n in zones.notes)
    lines = gpd.GeoDataFrame({"DLBM": ["0301"]}, geometry=[shapely.LineString([(117, 49), (117.01, 49)])],
                             crs="EPSG:4490")
    lines.to_file(tmp_path / "lines.gpkg", engine="pyogrio")
    with pytest.raises(InputError, match="holds no parcel with an area"):
        load_zones([ZoneLayer(path=tmp_path / "lines.gpkg", land_survey=True)], ["forest"], AOI)
