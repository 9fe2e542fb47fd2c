"""A region across the UTM zone boundary at 120° E (zones 50N and 51N), end to end."""

import geopandas as gpd
import pyogrio
import pytest
import yaml
from shapely.geometry import box

from pipeline.config import load_config
from pipeline.demo import demo_config
from pipeline.evaluation.scores import score_leads
from pipeline.run import run

pytestmark = pytest.mark.slow  # runs whole scenes

AOI = box(119.93, 49.0, 120.07, 49.09)  # about 10 x 10 km, half in each zone


@pytest.fixture(scope="module")
def cross_zone_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cross_zone")
    gpd.GeoDataFrame(geometry=[AOI], crs="EPSG:4326").to_file(folder / "aoi.geojson")
    config = {
        "name": "across-120E", "aoi": ["aoi.geojson"],
        "windows": {"baseline": {"start": "2024-07-01", "end": "2024-08-31"},
                    "monitoring": {"start": "2025-07-01", "end": "2025-08-31"}},
        "source": {"type": "simulated", "seed": 5, "folder": "inputs"},  # imagery in one zone only
        "zones": [{"path": "inputs/zones.gpkg", "column": "zone"}],  # the lake zone falls back to aoi/
        "permits": demo_config()["permits"],
        "output": ".", "evidence": False,
    }
    (folder / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    run(load_config(folder / "run.yaml"), progress=False)
    return folder


def test_cells_and_mosaics_in_both_zones(cross_zone_run):
    cells = pyogrio.read_dataframe(cross_zone_run / "leads.gpkg", layer="cells")
    assert set(cells.epsg) == {32650, 32651}
    assert (cells.status == "done").all()
    notes = pyogrio.read_dataframe(cross_zone_run / "leads.gpkg", layer="run").value.tolist()
    assert any("using the approximate hulun_lake_protection_zone.geojson" in n for n in notes)
    assert sorted(p.name for p in cross_zone_run.glob("probabilities_*.vrt")) == [
        "probabilities_32650.vrt", "probabilities_32651.vrt"]


def test_changes_on_both_sides_are_found_once(cross_zone_run):
    leads = gpd.read_file(cross_zone_run / "leads.gpkg", layer="leads")
    truth = gpd.read_file(cross_zone_run / "inputs" / "truth.gpkg", layer="changes")
    assert (leads.lon < 120).any() and (leads.lon > 120).any()
    scores = score_leads(leads, truth).set_index("category")
    assert scores.loc["all", "recall"] >= 0.8
    assert scores.loc["all", "precision"] >= 0.8
    assert scores.loc["all", "flagged_permitted"] == 0
    truth = truth.to_crs(leads.crs)
    for _, change in truth[truth.expected_lead].iterrows():
        same = leads[(leads.category == change.category) & leads.intersects(change.geometry)]
        assert len(same) <= 1, change.change_id
