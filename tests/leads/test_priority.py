import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from shapely.geometry import Point, box

from pipeline.config import PriorityLayer, load_config
from pipeline.detection.vectorize import EQUAL_AREA_CRS
from pipeline.errors import InputError
from pipeline.leads.priority import PriorityLayers, load_priority_layers, prioritise

AOI = box(117.4, 48.9, 117.7, 49.1)  # WGS84
RED_LINE = "生态保护红线"


def _lead(lon: float, lat: float, side_m: float) -> object:
    """A square lead of `side_m` around a WGS84 point, in the equal-area CRS."""
    utm = gpd.GeoSeries([Point(lon, lat)], crs="EPSG:4326").to_crs("EPSG:32650").iloc[0]
    square = box(utm.x - side_m / 2, utm.y - side_m / 2, utm.x + side_m / 2, utm.y + side_m / 2)
    return gpd.GeoSeries([square], crs="EPSG:32650").to_crs(EQUAL_AREA_CRS).iloc[0]


def _leads() -> gpd.GeoDataFrame:
    """A: sure and large, outside every layer; B: less sure and small, inside the red line;
    C: as sure and large as A, but partly in the red line; D: like A, smaller."""
    geoms = [_lead(117.45, 48.95, 300), _lead(117.60, 49.05, 150), _lead(117.50, 49.00, 300),
             _lead(117.42, 48.93, 200)]
    area = np.array([g.area for g in geoms])
    return gpd.GeoDataFrame({"lead_id": ["A", "B", "C", "D"], "area_m2": area, "area_ha": area / 1e4,
                             "confidence": ["高", "中", "高", "高"], "confidence_score": [0.9, 0.6, 0.9, 0.9]},
                            geometry=geoms, crs=EQUAL_AREA_CRS)


def _layer(tmp_path, geoms, crs="EPSG:4490", name="red_line.gpkg"):
    path = tmp_path / name
    gpd.GeoDataFrame({"名称": ["红线"] * len(geoms)}, geometry=geoms, crs=crs).to_file(path, engine="pyogrio")
    return path


def _red_line(tmp_path) -> PriorityLayers:
    # covers B whole and the eastern part of C (C spans about 117.498-117.502° E)
    path = _layer(tmp_path, [box(117.59, 49.04, 117.61, 49.06), box(117.5012, 48.99, 117.51, 49.01)])
    return load_priority_layers([PriorityLayer(path=path, name=RED_LINE, weight=1.0)], AOI)


def test_leads_are_ranked_by_confidence_and_area_without_layers():
    ranked = prioritise(_leads(), PriorityLayers())
    assert ranked.lead_id.tolist() == ["A", "C", "D", "B"]  # A and C tie: the larger first, then by id
    assert ranked.priority_rank.tolist() == [1, 2, 3, 4]
    assert ranked.priority.is_monotonic_decreasing
    assert ranked.priority_reasons[0] == f"面积 {ranked.area_ha[0]:.1f} ha; 高置信度"


def test_a_reference_layer_raises_the_leads_in_it(tmp_path):
    ranked = prioritise(_leads(), _red_line(tmp_path)).set_index("lead_id")
    plain = prioritise(_leads(), PriorityLayers()).set_index("lead_id")
    assert ranked.priority["B"] == pytest.approx(2 * plain.priority["B"])  # weight 1: doubled
    assert ranked.priority_rank["B"] < ranked.priority_rank["D"]  # small and less sure, but in the red line
    assert ranked.priority_reasons["B"].startswith(f"{RED_LINE}内; 面积 ")
    assert ranked.priority_reasons["C"].startswith(f"部分在{RED_LINE}内 (")
    assert ranked.priority["C"] > ranked.priority["A"]
    assert RED_LINE not in ranked.priority_reasons["A"] and ranked.priority["A"] == plain.priority["A"]


def test_the_order_survives_the_geopackage(tmp_path):
    ranked = prioritise(_leads(), _red_line(tmp_path))
    path = tmp_path / "leads.gpkg"
    pyogrio.write_dataframe(ranked, path, layer="leads", driver="GPKG")
    back = pyogrio.read_dataframe(path, layer="leads")
    assert back.lead_id.tolist() == ranked.lead_id.tolist()
    assert back.priority_rank.tolist() == [1, 2, 3, 4]
    assert back.priority_reasons.tolist() == ranked.priority_reasons.tolist()


def test_a_layer_in_the_wrong_crs_is_refused_with_the_likely_cause(tmp_path):
    # degrees written into a layer that says Gauss-Krüger metres: it lands nowhere near the AOI
    path = _layer(tmp_path, [box(117.59, 49.04, 117.61, 49.06)], crs="EPSG:4527")
    with pytest.raises(InputError, match="degrees of longitude and latitude") as err:
        load_priority_layers([PriorityLayer(path=path, name=RED_LINE)], AOI)
    assert "red_line.gpkg" in str(err.value)


def test_a_layer_without_areas_is_refused(tmp_path):
    path = _layer(tmp_path, [Point(117.5, 49.0)], name="points.gpkg")
    with pytest.raises(InputError, match=r"priority_layers\[0\].*holds no polygon"):
        load_priority_layers([PriorityLayer(path=path, name="自然保护区")], AOI)


def test_a_layer_near_but_outside_the_aoi_raises_nothing_and_says_so(tmp_path):
    path = _layer(tmp_path, [box(118.0, 49.2, 118.1, 49.3)], name="farmland.gpkg")
    layers = load_priority_layers([PriorityLayer(path=path, name="永久基本农田")], AOI)
    assert any("farmland.gpkg: no area of 永久基本农田 reaches the AOI" in n for n in layers.notes)
    ranked = prioritise(_leads(), layers)
    assert not ranked.priority_reasons.str.contains("永久基本农田").any()


def test_priority_layers_are_configured_with_paths_relative_to_the_file(tmp_path):
    (tmp_path / "run.yaml").write_text(
        "name: t\naoi: [aoi.geojson]\nwindows:\n  baseline: {start: 2024-07-01, end: 2024-08-31}\n"
        "  monitoring: {start: 2025-07-01, end: 2025-08-31}\nsource: {type: local, paths: [\"*.tif\"]}\n"
        "output: out\npriority_layers:\n  - {path: refs/red_line.gpkg, name: 生态保护红线, weight: 2}\n",
        encoding="utf-8")
    layer = load_config(tmp_path / "run.yaml").priority_layers[0]
    assert (layer.path, layer.name, layer.weight) == (tmp_path / "refs" / "red_line.gpkg", RED_LINE, 2.0)


@pytest.mark.slow
def test_a_demo_run_ranks_its_leads_with_confidence(demo_run):
    leads = pyogrio.read_dataframe(demo_run / "leads.gpkg", layer="leads")
    assert len(leads)
    assert leads.priority_rank.tolist() == list(range(1, len(leads) + 1))
    assert leads.priority.is_monotonic_decreasing
    assert set(leads.confidence) <= {"低", "中", "高"}
    assert (leads.clear_acquisitions >= leads.confirmations).all() and (leads.confirmations >= 0).all()
    assert leads.anychange_mean.notna().all()
    assert leads.priority_reasons.str.contains("置信度").all()


def test_no_leads_keep_the_layer_schema(tmp_path):
    from datetime import date

    from pipeline.config import DateRange, Windows
    from pipeline.detection.vectorize import merge_across_cells
    from pipeline.leads.confidence import assess_confidence
    from pipeline.leads.overlay import LEAD_SCHEMA, make_leads

    windows = Windows(baseline=DateRange(start=date(2024, 7, 1), end=date(2024, 8, 31)),
                      monitoring=DateRange(start=date(2025, 7, 1), end=date(2025, 8, 31)))
    none, _ = make_leads(merge_across_cells([], 10.0), gpd.GeoDataFrame(geometry=[], crs="EPSG:4326"), windows,
                         "baseline")

    class NoImagery:
        bands = ()

        def composite(self, grid, window):
            return None

        def acquisition_reads(self, grid, window):
            return []

    assessed, _ = assess_confidence(none, NoImagery(), windows, [], 0.5, progress=False)
    ranked = prioritise(assessed, _red_line(tmp_path))
    assert ranked.empty
    assert ranked.dtypes.astype(str).to_dict() == {**LEAD_SCHEMA, "geometry": "geometry"}
