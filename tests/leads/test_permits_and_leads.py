from datetime import date

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
from shapely.geometry import Polygon, box

from pipeline.config import DateRange, PermitColumns, PermitLayer, Windows
from pipeline.detection.vectorize import EQUAL_AREA_CRS
from pipeline.errors import InputError
from pipeline.inputs.permits import load_permits
from pipeline.leads.overlay import check_permit, lead_id, make_leads

WINDOWS = Windows(baseline=DateRange(start=date(2024, 7, 1), end=date(2024, 8, 31)),
                  monitoring=DateRange(start=date(2025, 7, 1), end=date(2025, 8, 31)))
ZH = PermitColumns(permit_id="许可证号", permit_type="许可类型", holder="持有人", valid_from="批准日期",
                   valid_to="有效期至", reclaim_by="复垦期限")
TYPES = {"采矿许可": "mining", "临时用地": "temporary_land", "建设用地": "construction"}
AOI = box(117.4, 48.9, 117.7, 49.1)  # WGS84, around the registers' permits


def _register(tmp_path, rows, crs="EPSG:4490"):
    gdf = gpd.GeoDataFrame(pd.DataFrame(rows).drop(columns="geometry"), geometry=[r["geometry"] for r in rows],
                           crs=crs)
    path = tmp_path / "permits.gpkg"
    gdf.to_file(path, engine="pyogrio")
    return path


def _row(pid, ptype, start, end, reclaim=None, geom=None):
    return {"许可证号": pid, "许可类型": ptype, "持有人": "x", "批准日期": start, "有效期至": end,
            "复垦期限": reclaim, "geometry": geom or box(117.5, 49.0, 117.51, 49.01)}


def test_chinese_columns_are_mapped_and_broken_geometry_repaired(tmp_path):
    bowtie = Polygon([(117.5, 49.0), (117.51, 49.01), (117.51, 49.0), (117.5, 49.01)])
    path = _register(tmp_path, [_row("A1", "采矿许可", "2024-01-01", "2026-12-31"),
                                _row("A2", "临时用地", "2023/05/01", "2024-04-30", geom=bowtie)])
    permits = load_permits([PermitLayer(path=path, columns=ZH, type_values=TYPES)], AOI)
    t = permits.table
    assert t.permit_type.tolist() == ["mining", "temporary_land"]
    assert t.valid_from.tolist() == [date(2024, 1, 1), date(2023, 5, 1)]
    assert t.geometry.is_valid.all()
    assert any("repaired 1 invalid geometry" in n for n in permits.notes)


def test_unmapped_column_names_the_field_and_the_columns_present(tmp_path):
    path = _register(tmp_path, [_row("A1", "采矿许可", "2024-01-01", "2026-12-31")])
    cols = ZH.model_copy(update={"valid_to": "截止日期"})
    with pytest.raises(InputError) as err:
        load_permits([PermitLayer(path=path, columns=cols, type_values=TYPES)], AOI)
    msg = str(err.value)
    assert "permits.gpkg" in msg and "permits[0].columns.valid_to" in msg and "有效期至" in msg


def test_unknown_type_value_asks_for_a_mapping(tmp_path):
    path = _register(tmp_path, [_row("A1", "取土许可", "2024-01-01", "2026-12-31")])
    with pytest.raises(InputError, match=r"'取土许可'.*not mapped") as err:
        load_permits([PermitLayer(path=path, columns=ZH, type_values=TYPES)], AOI)
    assert "permits[0].type_values" in str(err.value)


def test_missing_dates_keep_the_permit_but_it_never_exempts(tmp_path):
    rows = [_row("A1", "采矿许可", "2024-01-01", None), _row("A2", "采矿许可", "soon", "2026-01-01")]
    permits = load_permits([PermitLayer(path=_register(tmp_path, rows), columns=ZH, type_values=TYPES)], AOI)
    assert permits.table.issues.tolist() == ["valid_to missing", "valid_from unreadable ('soon')"]
    assert any("2 permit(s) without usable dates" in n for n in permits.notes)
    for _, p in permits.table.iterrows():
        assert check_permit(p, "mine", WINDOWS).status == "undated"


def test_chinese_and_open_ended_dates(tmp_path):
    rows = [_row("A1", "采矿许可", "2024年4月1日", "长期"), _row("A2", "采矿许可", "2024/04/01", "2026-1-31")]
    t = load_permits([PermitLayer(path=_register(tmp_path, rows), columns=ZH, type_values=TYPES)], AOI).table
    assert t.valid_from.tolist() == [date(2024, 4, 1), date(2024, 4, 1)]
    assert t.valid_to.tolist() == [date.max, date(2026, 1, 31)]
    assert (t.issues == "").all()


def test_open_ended_temporary_land_and_open_start(tmp_path):
    rows = [_row("T1", "临时用地", "2024-01-01", "长期"), _row("T2", "临时用地", "长期", "2026-01-01")]
    t = load_permits([PermitLayer(path=_register(tmp_path, rows), columns=ZH, type_values=TYPES)], AOI).table
    assert check_permit(t.iloc[0], "temporary_land", WINDOWS).status == "valid"
    assert t.issues.tolist() == ["", "valid_from unreadable ('长期')"]


def test_unreadable_reclamation_deadline_is_noted_but_not_undated(tmp_path):
    rows = [_row("T1", "临时用地", "2024-01-01", "2026-01-01", reclaim="soon")]
    permits = load_permits([PermitLayer(path=_register(tmp_path, rows), columns=ZH, type_values=TYPES)], AOI)
    assert permits.table.issues.tolist() == ["reclaim_by unreadable ('soon')"]
    assert any("unreadable reclamation deadline" in n for n in permits.notes)
    assert not any("without usable dates" in n for n in permits.notes)
    assert check_permit(permits.table.iloc[0], "temporary_land", WINDOWS).status == "valid"


@pytest.mark.parametrize("blank", [None, "", "  "])
def test_permit_without_type_needs_a_default(tmp_path, blank):
    path = _register(tmp_path, [_row("A1", blank, "2024-01-01", "2026-12-31")])
    with pytest.raises(InputError, match=r"1 permit\(s\) have no type \(A1\)"):
        load_permits([PermitLayer(path=path, columns=ZH, type_values=TYPES)], AOI)
    table = load_permits([PermitLayer(path=path, columns=ZH, type_values=TYPES, default_type="mining")], AOI).table
    assert table.permit_type.tolist() == ["mining"]


def _permit(ptype, start, end, reclaim=None):
    return pd.Series({"permit_id": "P", "permit_type": ptype, "valid_from": start, "valid_to": end,
                      "reclaim_by": reclaim})


@pytest.mark.parametrize(("permit", "category", "status"), [
    (_permit("mining", date(2024, 1, 1), date(2027, 1, 1)), "mine", "valid"),
    (_permit("mining", date(2019, 1, 1), date(2024, 3, 31)), "mine", "expired"),
    (_permit("mining", date(2019, 1, 1), date(2023, 3, 31), date(2024, 3, 31)), "mine", "reclamation_overdue"),
    (_permit("construction", date(2024, 1, 1), date(2027, 1, 1)), "mine", "wrong_type"),
    (_permit("mining", date(2025, 10, 1), date(2027, 1, 1)), "mine", "not_yet_valid"),
    # temporary land stays allowed until its reclamation deadline (default: one year after expiry)
    (_permit("temporary_land", date(2023, 1, 1), date(2024, 12, 31)), "temporary_land", "valid"),
    (_permit("temporary_land", date(2021, 1, 1), date(2023, 12, 31)), "temporary_land", "reclamation_overdue"),
    # a one-off change is exempt when the permit was valid during the change, even if it has closed since
    (_permit("forest_use", date(2024, 9, 1), date(2025, 6, 30)), "forest", "valid"),
    (_permit("forest_use", date(2020, 1, 1), date(2024, 6, 30)), "forest", "expired"),
])
def test_permit_checks(permit, category, status):
    assert check_permit(permit, category, WINDOWS).status == status


def _scene():
    """A 200 x 100 m mine expansion (2 ha) in the equal-area CRS, and a permit table factory."""
    change = box(0, 0, 200, 100)
    det = gpd.GeoDataFrame({"category": ["mine"], "p_mean": [0.8], "p_max": [0.95], "before_dates": ["2024-07-08"],
                            "after_dates": ["2025-07-13"]}, geometry=[change], crs=EQUAL_AREA_CRS)

    def permits(*items):
        rows = [{"permit_id": f"P{i}", "permit_type": t, "valid_from": s, "valid_to": e, "reclaim_by": r,
                 "geometry": g} for i, (t, s, e, r, g) in enumerate(items)]
        return gpd.GeoDataFrame(rows, geometry="geometry", crs=EQUAL_AREA_CRS).to_crs("EPSG:4326")

    return det, permits


VALID = (date(2024, 1, 1), date(2027, 1, 1), None)


@pytest.mark.parametrize(("cover", "dates", "reason", "area"), [
    (None, VALID, "no_permit", 20000),
    (box(0, 0, 200, 100), VALID, None, 0),                      # fully permitted: no lead
    (box(0, 0, 50, 100), VALID, "partly_covered", 15000),       # 25 % covered
    (box(0, 0, 150, 100), VALID, "outside_boundary", 5000),     # 75 % covered, the rest spills out
    (box(0, 0, 190, 100), VALID, None, 0),                      # 1000 m2 left: below the 3000 m2 unit
    (box(0, 0, 200, 100), (date(2019, 1, 1), date(2024, 3, 31), None), "expired", 20000),
    (box(0, 0, 200, 100), (date(2019, 1, 1), date(2023, 3, 31), date(2024, 1, 1)), "reclamation_overdue", 20000),
])
def test_leads_from_permit_overlay(cover, dates, reason, area):
    det, permits = _scene()
    table = permits(("mining", *dates, cover)) if cover is not None else permits(("construction", *VALID,
                                                                                   box(500, 500, 600, 600)))
    leads, annotated = make_leads(det, table, WINDOWS, "baseline")
    if reason is None:
        assert leads.empty
        assert annotated.status.tolist() == ["permitted"]
        return
    assert len(leads) == 1
    lead = leads.iloc[0]
    assert lead.reason == reason
    assert lead.area_m2 == pytest.approx(area, rel=1e-3)
    assert lead.area_mu == pytest.approx(area / 666.667, rel=1e-3)
    assert lead.change_area_m2 == pytest.approx(20000, rel=1e-3)
    assert annotated.lead_id.tolist() == [lead.lead_id]
    assert "2025-07-01/2025-08-31" == lead.monitoring_window


def test_lead_id_is_stable_and_distinguishes_place_and_category():
    geom = box(117.50, 49.00, 117.51, 49.01)
    a = lead_id("mine", geom, WINDOWS)
    assert a == lead_id("mine", geom, WINDOWS)
    assert a.startswith("MN-2025-")
    assert a != lead_id("mine", box(117.52, 49.00, 117.53, 49.01), WINDOWS)
    assert a != lead_id("forest", geom, WINDOWS)


def test_leads_layer_has_one_schema_for_no_lead_and_for_many(tmp_path):
    from pipeline.detection.vectorize import merge_across_cells
    from pipeline.leads.overlay import LEAD_SCHEMA
    from pipeline.outputs.geopackage import write_geopackage

    det, permits = _scene()
    none, _ = make_leads(merge_across_cells([], 10.0), permits(("mining", *VALID, box(0, 0, 200, 100))), WINDOWS,
                         "baseline")
    some, _ = make_leads(det, permits(("construction", *VALID, box(500, 500, 600, 600))), WINDOWS, "baseline")
    assert none.empty and len(some) == 1
    assert list(none.columns) == list(some.columns) == [*LEAD_SCHEMA, "geometry"]
    assert none.dtypes.astype(str).tolist() == some.dtypes.astype(str).tolist()
    fields = []
    for name, frame in (("none", none), ("some", some)):
        write_geopackage(tmp_path / f"{name}.gpkg", {"leads": frame})
        info = pyogrio.read_info(tmp_path / f"{name}.gpkg", layer="leads")  # as GDAL reads it back
        fields.append(list(zip(info["fields"], info["dtypes"], strict=True)))
    assert fields[0] == fields[1]
