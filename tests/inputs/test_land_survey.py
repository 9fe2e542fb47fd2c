"""The land survey's code table, code matching, and the land class each lead carries."""

import json
import shutil
from datetime import date
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import yaml
from shapely.geometry import box

from detectors.categories import Zone
from pipeline.config import DateRange, Windows, ZoneLayer, load_config
from pipeline.demo import demo_config
from pipeline.detection.vectorize import EQUAL_AREA_CRS
from pipeline.inputs.land_survey import LAND_CLASSES, SURVEY_ZONES, land_class_of, normalise_codes, zone_of
from pipeline.inputs.permits import load_permits
from pipeline.inputs.zones import load_zones
from pipeline.leads.overlay import LEAD_SCHEMA, make_leads
from pipeline.outputs.geopackage import write_geopackage
from pipeline.run import run
from tests.inputs.test_zones import AOI, SURVEY, strips, write_survey

WINDOWS = Windows(baseline=DateRange(start=date(2024, 7, 1), end=date(2024, 8, 31)),
                  monitoring=DateRange(start=date(2025, 7, 1), end=date(2025, 8, 31)))
DOC = Path(__file__).parents[2] / "docs" / "land_survey.md"


@pytest.mark.parametrize(("code", "zone"), [
    ("0101", Zone.BLACK_SOIL), ("0103", Zone.BLACK_SOIL), ("0301", Zone.FOREST), ("0301K", Zone.FOREST),
    ("0305", Zone.FOREST), ("0304", Zone.WETLAND), ("0401", Zone.GRASSLAND), ("0402", Zone.WETLAND),
    ("1101", Zone.RIVER), ("1102", Zone.LAKE), ("1106", Zone.WETLAND), ("0602", Zone.MINING_DISTRICT),
    ("0603", Zone.WETLAND), ("0601", None), ("0701", None), ("1201", None), ("1104A", None), ("", None),
])
def test_built_in_zones_by_longest_prefix(code, zone):
    assert zone_of(code) is zone


def test_overrides_come_before_the_built_ins_and_longer_codes_before_shorter():
    overrides = {"03": None, "0301": Zone.FOREST, "0101": Zone.BLACK_SOIL, "01": None}
    assert zone_of("0305", overrides) is None
    assert zone_of("0301K", overrides) is Zone.FOREST
    assert zone_of("0303", overrides) is Zone.WETLAND  # the built-in 0303 is longer than the override 03
    assert zone_of("0101", overrides) is Zone.BLACK_SOIL and zone_of("0103", overrides) is None


def test_codes_are_normalised_as_the_survey_writes_them():
    assert normalise_codes(pd.Series([301, 1101.0, None])).tolist() == ["0301", "1101", ""]
    assert normalise_codes(pd.Series([" 0301k", None, "1201"])).tolist() == ["0301K", "", "1201"]


def test_the_documented_table_is_the_built_in_one():
    """docs/land_survey.md lists every code with its name and zone, as the code reads them."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] and cells[0][:2].isdigit():
            rows[cells[0]] = (cells[1], cells[2])
    assert rows == {code: (name, (zone_of(code).value if zone_of(code) else "—"))
                    for code, name in LAND_CLASSES.items()}
    assert set(SURVEY_ZONES) <= set(LAND_CLASSES)


def test_the_parcel_covering_most_of_a_lead_names_its_land_class():
    parcels = gpd.GeoDataFrame({"dlbm": ["0301", "0404"], "dlmc": ["乔木林地", "其他草地"]},
                               geometry=[box(0, 0, 100, 100), box(100, 0, 200, 100)], crs=EQUAL_AREA_CRS)
    leads = gpd.GeoSeries([box(20, 0, 120, 50), box(90, 0, 190, 50), box(500, 500, 510, 510)], crs=EQUAL_AREA_CRS)
    got = land_class_of(leads, parcels.to_crs("EPSG:4326"))
    assert got.dlbm.tolist() == ["0301", "0404", None]
    assert got.dlmc.tolist() == ["乔木林地", "其他草地", None]
    assert land_class_of(leads, None).dlbm.isna().all()


def test_leads_carry_the_land_class_of_their_parcel_into_the_geopackage(tmp_path):
    """A survey read without filtering; a change mostly on forest (0301) and partly on 0402, one
    on a town parcel (0701, no zone) and one outside the survey."""
    zones = load_zones([ZoneLayer(path=write_survey(tmp_path / "三调.gpkg"), land_survey=True)], ["forest"], AOI)
    s = strips(len(SURVEY) + 3)
    changes = [box(500130, 5429200, 500230, 5429500),  # 70 m on 0301, 30 m on 0402
               box(500610, 5429200, 500690, 5429500),  # inside 0701
               s[-1]]  # beyond the survey's last strip
    det = gpd.GeoDataFrame({"category": ["forest", "temporary_land", "temporary_land"], "p_mean": 0.8,
                            "p_max": 0.9, "before_dates": "2024-07-08", "after_dates": "2025-07-13"},
                           geometry=gpd.GeoSeries(changes, crs="EPSG:32650").to_crs(EQUAL_AREA_CRS))
    leads, _ = make_leads(det, load_permits([], AOI).table, WINDOWS, "baseline", zones.land_classes)
    by_category = leads.set_index("category")
    assert (by_category.loc["forest", "dlbm"], by_category.loc["forest", "dlmc"]) == ("0301", "乔木林地")
    assert sorted(leads.dlbm[leads.category == "temporary_land"], key=str) == ["0701", None]
    write_geopackage(tmp_path / "leads.gpkg", {"leads": leads})
    back = pyogrio.read_dataframe(tmp_path / "leads.gpkg", layer="leads")
    assert list(back.columns) == [*LEAD_SCHEMA, "geometry"]
    assert back.set_index("category").loc["forest", "dlmc"] == "乔木林地"


#: The demo's zones as the land survey would code them.
DEMO_CODES = {"forest": ("0301", "乔木林地"), "grassland": ("0404", "其他草地"), "black_soil": ("0103", "旱地"),
              "river": ("1101", "河流水面"), "wetland": ("1108", "沼泽地"), "mining_district": ("0602", "采矿用地")}


@pytest.mark.slow
def test_demo_with_a_land_survey_finds_the_same_leads_and_names_their_land_class(demo_run, tmp_path):
    """The demo's zone layer handed over as a land survey, unfiltered: the zones' parcels coded,
    and the land between them town (0701) and idle land (1201), which give no zone."""
    shutil.copytree(demo_run / "inputs", tmp_path / "inputs")  # the simulated scene, not simulated again
    drawn = gpd.read_file(tmp_path / "inputs" / "zones.gpkg")
    rest = box(*drawn.total_bounds).buffer(2000).difference(drawn.union_all())
    middle = rest.centroid.x
    halves = [rest.intersection(box(-1e7, -1e8, middle, 1e8)), rest.intersection(box(middle, -1e8, 1e7, 1e8))]
    survey = gpd.GeoDataFrame({"DLBM": [DEMO_CODES[z][0] for z in drawn.zone] + ["0701", "1201"],
                               "DLMC": [DEMO_CODES[z][1] for z in drawn.zone] + ["城镇住宅用地", "空闲地"]},
                              geometry=[*drawn.geometry, *halves], crs=drawn.crs)
    survey.explode(index_parts=False).to_crs("EPSG:4490").to_file(tmp_path / "inputs" / "三调.gpkg", engine="pyogrio")
    config = demo_config()
    config["zones"][0] = {"path": "inputs/三调.gpkg", "land_survey": True}
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    run(load_config(tmp_path / "demo.yaml"), tmp_path / "demo.yaml", progress=False)

    leads = pyogrio.read_dataframe(tmp_path / "leads.gpkg", layer="leads")
    demo = pyogrio.read_dataframe(demo_run / "leads.gpkg", layer="leads")
    assert sorted(leads.lead_id) == sorted(demo.lead_id)  # an id stands for a place and a category
    assert leads.dlbm.notna().all() and demo.dlbm.isna().all()
    names = dict(DEMO_CODES.values()) | {"0701": "城镇住宅用地", "1201": "空闲地"}
    assert all(names[c] == n for c, n in zip(leads.dlbm, leads.dlmc, strict=True))
    assert set(leads.dlbm[leads.category == "forest"]) == {"0301"}
    notes = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))["notes"]
    assert any("give no zone and are ignored, by code: 1201 空闲地" in n and "0701 城镇住宅用地" in n for n in notes)
