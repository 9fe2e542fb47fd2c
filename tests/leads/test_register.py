"""The lead register across runs: matching, statuses, reviewers' edits, rejected leads, safe writes."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely
import yaml
from filelock import FileLock

from detectors.categories import get_category
from pipeline.cli import main
from pipeline.config import parse_config
from pipeline.detection.vectorize import EQUAL_AREA_CRS
from pipeline.errors import InputError
from pipeline.leads.register import (
    HANDED_OUT,
    LAYER,
    LEFT_OUT,
    NEW,
    PERSISTING,
    REJECTED,
    REVIEWED,
    STATUSES,
    RegisterCheck,
    RunStamp,
    backup_path,
    empty_register,
    match_leads,
    read_register,
    reconcile,
)

X0, Y0 = 11_290_000.0, 5_390_000.0  # near Hulun Lake in EPSG:6933
AUGUST = RunStamp("2025-08", "august", "2025-07-01/2025-08-31")
SEPTEMBER = RunStamp("2025-09", "september", "2025-08-01/2025-09-30")
OCTOBER = RunStamp("2025-10", "october", "2025-09-01/2025-10-31")


def box(x: float, y: float, w: float, h: float | None = None) -> shapely.Polygon:
    """A rectangle in metres from the AOI's corner (EPSG:6933)."""
    return shapely.box(X0 + x, Y0 + y, X0 + x + w, Y0 + y + (w if h is None else h))


def leads_frame(*leads: tuple[str, str, shapely.Polygon]) -> gpd.GeoDataFrame:
    """A run's leads as `make_leads` hands them over: (lead_id, category, geometry) in the equal-area CRS."""
    ids, cats, geoms = zip(*leads, strict=True) if leads else ((), (), ())
    frame = gpd.GeoDataFrame({"lead_id": list(ids), "category": list(cats),
                              "category_zh": [get_category(c).name_zh for c in cats],
                              "status": "线索", "area_m2": shapely.area(list(geoms)) if leads else [],
                              "lon": 117.5, "lat": 49.0}, geometry=list(geoms), crs=EQUAL_AREA_CRS)
    return frame.assign(register_id="", register_note="")


def first_run() -> gpd.GeoDataFrame:
    """The register after August's run: a grassland lead and a mine."""
    done = reconcile(empty_register("EPSG:4490"), leads_frame(("GR-a", "grassland", box(0, 0, 200)),
                                                              ("MN-b", "mine", box(1000, 0, 300))), AUGUST)
    assert list(done.leads.status) == [NEW, NEW]
    return done.register


def review(register: gpd.GeoDataFrame, register_id: str, **fields: str) -> gpd.GeoDataFrame:
    """A reviewer's edit of one registered lead."""
    reg = register.copy()
    for name, value in fields.items():
        reg.loc[reg.register_id == register_id, name] = value
    return reg


def test_a_second_run_marks_every_lead_seen_before() -> None:
    register = first_run()
    # next month: new ids (the window is in the id), outlines a little different
    september = leads_frame(("GR-c", "grassland", box(20, 10, 200)), ("MN-d", "mine", box(1000, 0, 320, 300)))
    done = reconcile(register, september, SEPTEMBER)
    assert list(done.leads.status) == [PERSISTING, PERSISTING] and done.counts["leads_new"] == 0
    assert list(done.leads.register_id) == ["GR-a", "MN-b"]
    assert done.leads.register_note.str.contains("first seen in 2025-08").all()
    assert len(done.register) == 2 and list(done.register.runs_seen) == [2, 2]
    assert list(done.register.last_lead_ids) == ["GR-c", "MN-d"] and set(done.register.status) == {PERSISTING}
    assert list(done.register.first_run) == ["2025-08", "2025-08"]


def test_the_issuing_run_done_again_keeps_its_leads_new() -> None:
    register = first_run()
    again = reconcile(register, leads_frame(("GR-a", "grassland", box(0, 0, 200))), AUGUST)
    assert list(again.leads.status) == [NEW] and again.register.runs_seen.iloc[0] == 1
    assert list(again.leads.register_note) == [""]  # a resumed run's leads read as on their first issue


@pytest.mark.parametrize(("category", "geometry", "continues"), [
    ("grassland", box(60, 0, 200), True),  # IoU 0.54
    ("grassland", box(120, 0, 200), False),  # IoU 0.25, and covers 40 % of either: another change next door
    ("grassland", box(-400, -400, 1000), True),  # IoU 0.04 but it covers all of the registered one
    ("grassland", box(50, 50, 60), True),  # a small part left of it
    ("forest", box(0, 0, 200), False),  # another family
    ("other", box(0, 0, 200), True),  # unclassified by this run: the same change
])
def test_a_lead_continues_a_registered_one_by_overlap_in_its_family(category: str, geometry: shapely.Polygon,
                                                                    continues: bool) -> None:
    register = first_run()
    rows = match_leads(register, leads_frame(("XX-new", category, geometry)))
    assert rows[0] == (0 if continues else -1)


def test_the_same_id_continues_a_lead_whatever_its_outline() -> None:
    register = first_run()
    assert list(match_leads(register, leads_frame(("MN-b", "mine", box(5000, 5000, 100))))) == [1]


def test_a_new_change_is_added_beside_the_registered_ones() -> None:
    register = first_run()
    done = reconcile(register, leads_frame(("GR-c", "grassland", box(0, 0, 200)),
                                           ("WL-e", "wetland", box(3000, 3000, 150))), SEPTEMBER)
    assert list(done.leads.status) == [PERSISTING, NEW] and list(done.leads.register_id) == ["GR-a", "WL-e"]
    assert list(done.register.register_id) == ["GR-a", "MN-b", "WL-e"]  # order kept: QGIS's feature ids stay
    assert done.register.last_run.tolist() == ["2025-09", "2025-08", "2025-09"]  # the mine was not seen


def test_a_split_change_continues_one_registered_lead() -> None:
    register = first_run()
    done = reconcile(register, leads_frame(("GR-c", "grassland", box(0, 0, 90, 200)),
                                           ("GR-d", "grassland", box(110, 0, 90, 200))), SEPTEMBER)
    assert list(done.leads.register_id) == ["GR-a", "GR-a"] and len(done.register) == 2
    row = done.register.iloc[0]
    assert row.area_m2 == pytest.approx(2 * 90 * 200) and row.last_lead_ids == "GR-c,GR-d"


def test_a_rejected_lead_is_left_out_until_the_change_grows() -> None:
    register = review(first_run(), "GR-a", status=REVIEWED, review_outcome=REJECTED, reviewer="王",
                      review_date="2025-09-03", review_note="收割后的草地")
    same = reconcile(register, leads_frame(("GR-c", "grassland", box(0, 0, 200)),
                                           ("MN-d", "mine", box(1000, 0, 300))), SEPTEMBER)
    assert list(same.raised) == [False, True] and same.counts["leads_suppressed"] == 1
    row = same.register.iloc[0]
    assert (row.review_outcome, row.reviewer, row.review_note, row.status) == (REJECTED, "王", "收割后的草地", REVIEWED)
    assert row.review_area_m2 == pytest.approx(200 * 200) and row.last_result == LEFT_OUT

    grown_a_little = reconcile(same.register, leads_frame(("GR-f", "grassland", box(0, 0, 200, 280))), OCTOBER)
    assert list(grown_a_little.raised) == [False]  # 1.4 x the area reviewed

    grown = reconcile(grown_a_little.register, leads_frame(("GR-g", "grassland", box(0, 0, 200, 320))), OCTOBER)
    assert list(grown.raised) == [True] and grown.counts["leads_regrown"] == 1
    assert grown.leads.status.iloc[0] == REVIEWED and "raised again" in grown.leads.register_note.iloc[0]
    assert grown.register.review_outcome.iloc[0] == REJECTED  # the reviewer's word stays; they look again


def test_an_outcome_without_a_status_counts_as_reviewed_and_other_outcomes_are_raised() -> None:
    register = review(first_run(), "MN-b", review_outcome="属实", reviewer="李", review_date="2025-09-05")
    register = review(register, "GR-a", status=HANDED_OUT)
    done = reconcile(register, leads_frame(("GR-c", "grassland", box(0, 0, 200)),
                                           ("MN-d", "mine", box(1000, 0, 300))), SEPTEMBER)
    assert list(done.leads.status) == [HANDED_OUT, REVIEWED] and done.raised.all()
    assert list(done.register.status) == [HANDED_OUT, REVIEWED]
    assert "reviewed 属实 by 李 on 2025-09-05" in done.leads.register_note.iloc[1]


def test_no_leads_and_an_empty_register() -> None:
    done = reconcile(empty_register("EPSG:4490"), leads_frame(), AUGUST)
    assert len(done.register) == 0 and len(done.leads) == 0 and done.counts["leads_new"] == 0


# --- the register file -----------------------------------------------------------------------------------------

def commit(path: Path, leads: gpd.GeoDataFrame, stamp: RunStamp) -> RegisterCheck:
    check = RegisterCheck.against(path, leads, stamp, "EPSG:4490")
    check.commit()
    return check


def edit_as_qgis_does(path: Path, sql: str, *params: str) -> None:
    """An edit saved from QGIS: an UPDATE through SQLite on the GeoPackage in write-ahead-log mode.

    GDAL's GPKG triggers name its spatial SQL functions; SQLite alone needs them declared to
    prepare an UPDATE (they do not run for an edit of attributes only).
    """
    with sqlite3.connect(path) as db:
        for name in ("ST_IsEmpty", "ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"):
            db.create_function(name, 1, lambda _geom: 0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(sql, params)
    db.close()


AUGUST_LEADS = leads_frame(("GR-a", "grassland", box(0, 0, 200)), ("MN-b", "mine", box(1000, 0, 300)))


def test_the_register_is_a_geopackage_qgis_opens_with_its_style(tmp_path: Path) -> None:
    path = tmp_path / "register.gpkg"
    commit(path, AUGUST_LEADS, AUGUST)
    assert dict(pyogrio.list_layers(path)) == {LAYER: "MultiPolygon", "runs": None, "layer_styles": None}
    assert pyogrio.read_info(path, layer=LAYER)["crs"] == "EPSG:4490"
    styles = pyogrio.read_dataframe(path, layer="layer_styles")
    qml = styles.styleQML[styles.f_table_name == LAYER].iloc[0]
    assert 'editWidget type="ValueMap"' in qml and all(s in qml for s in STATUSES) and REJECTED in qml
    assert '<field name="register_id" editable="0"/>' in qml and '<field name="reviewer" editable="0"/>' not in qml
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert not backup_path(path).exists()


def test_a_reviewers_edit_survives_the_next_run_and_the_lead_is_not_raised_again(tmp_path: Path) -> None:
    path = tmp_path / "register.gpkg"
    commit(path, AUGUST_LEADS, AUGUST)
    edit_as_qgis_does(path, "UPDATE register SET status=?, review_outcome=?, reviewer=?, review_date=?, review_note=? "
                            "WHERE register_id='GR-a'", REVIEWED, REJECTED, "王", "2025-09-03", "耕作，非占用")
    september = leads_frame(("GR-c", "grassland", box(10, 0, 200)), ("MN-d", "mine", box(1000, 0, 300)))
    check = commit(path, september, SEPTEMBER)
    assert list(check.leads.lead_id) == ["MN-d"] and check.counts["leads_suppressed"] == 1
    assert any("1 lead(s) left out" in n and "GR-a" in n for n in check.notes)
    register, runs = read_register(path, "EPSG:4490")
    row = register.set_index("register_id").loc["GR-a"]
    assert (row.status, row.review_outcome, row.reviewer, row.review_date, row.review_note) == (
        REVIEWED, REJECTED, "王", "2025-09-03", "耕作，非占用")
    assert row.last_result == LEFT_OUT and list(runs.run) == ["2025-08", "2025-09"]
    assert list(runs.leads_suppressed) == [0, 1]
    assert not Path(f"{path}-wal").exists()  # nothing left that would read as QGIS holding it open
    previous, _ = read_register(backup_path(path), "EPSG:4490")
    assert previous.set_index("register_id").loc["GR-a", "reviewer"] == "王"  # the version the run replaced


def test_a_run_keeps_an_edit_made_while_it_ran(tmp_path: Path) -> None:
    path = tmp_path / "register.gpkg"
    commit(path, AUGUST_LEADS, AUGUST)
    check = RegisterCheck.against(path, leads_frame(("GR-c", "grassland", box(0, 0, 200))), SEPTEMBER, "EPSG:4490")
    edit_as_qgis_does(path, "UPDATE register SET status=? WHERE register_id='MN-b'", HANDED_OUT)
    check.commit()
    register, _ = read_register(path, "EPSG:4490")
    assert list(register.status) == [PERSISTING, HANDED_OUT]


def test_the_users_own_columns_and_styles_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "register.gpkg"
    commit(path, AUGUST_LEADS, AUGUST)
    edit_as_qgis_does(path, "ALTER TABLE register ADD COLUMN 案件编号 TEXT")
    edit_as_qgis_does(path, "UPDATE register SET 案件编号=? WHERE register_id='MN-b'", "呼检-2025-17")
    edit_as_qgis_does(path, "UPDATE layer_styles SET styleName=? WHERE f_table_name='register'", "my style")
    commit(path, leads_frame(("MN-d", "mine", box(1000, 0, 300))), SEPTEMBER)
    register = pyogrio.read_dataframe(path, layer=LAYER)
    assert register.set_index("register_id").loc["MN-b", "案件编号"] == "呼检-2025-17"
    assert list(pyogrio.read_dataframe(path, layer="layer_styles").styleName) == ["my style"]


def test_a_register_open_with_unsaved_changes_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "register.gpkg"
    commit(path, AUGUST_LEADS, AUGUST)
    db = sqlite3.connect(path)  # QGIS holds it open in write-ahead-log mode
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("SELECT count(*) FROM register").fetchone()
    try:
        with pytest.raises(InputError, match=r"register\.gpkg-wal") as err:
            commit(path, leads_frame(("MN-d", "mine", box(1000, 0, 300))), SEPTEMBER)
        assert "close" in err.value.fix
    finally:
        db.close()
    assert list(read_register(path, "EPSG:4490")[1].run) == ["2025-08"] and not backup_path(path).exists()
    commit(path, leads_frame(("MN-d", "mine", box(1000, 0, 300))), SEPTEMBER)  # closed: the run goes on


def test_a_held_register_is_refused_after_waiting(tmp_path: Path) -> None:
    path = tmp_path / "register.gpkg"
    commit(path, AUGUST_LEADS, AUGUST)
    before = path.read_bytes()
    check = RegisterCheck.against(path, leads_frame(("WL-e", "wetland", box(3000, 3000, 150))), SEPTEMBER,
                                  "EPSG:4490")
    with FileLock(f"{path}.lock"), pytest.raises(InputError, match="another eoleads run"):
        check.commit(wait_s=0)
    assert path.read_bytes() == before


def test_runs_finishing_together_both_land_in_the_register(tmp_path: Path) -> None:
    path = tmp_path / "register.gpkg"
    commit(path, AUGUST_LEADS, AUGUST)
    checks = [RegisterCheck.against(path, leads_frame((f"WL-{i}", "wetland", box(3000 + 1000 * i, 3000, 150))),
                                    RunStamp(f"area-{i}", f"area {i}", SEPTEMBER.window), "EPSG:4490")
              for i in range(2)]
    threads = [threading.Thread(target=c.commit) for c in checks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    register, runs = read_register(path, "EPSG:4490")
    assert sorted(register.register_id) == ["GR-a", "MN-b", "WL-0", "WL-1"]
    assert sorted(runs.run) == ["2025-08", "area-0", "area-1"]


def test_a_value_outside_the_lists_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "register.gpkg"
    commit(path, AUGUST_LEADS, AUGUST)
    edit_as_qgis_does(path, "UPDATE register SET review_outcome=? WHERE register_id='GR-a'", "不实")
    with pytest.raises(InputError, match="'不实'") as err:
        RegisterCheck.against(path, AUGUST_LEADS, SEPTEMBER, "EPSG:4490")
    assert err.value.field == "review_outcome"


def test_a_file_that_is_not_a_register_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "register.gpkg"
    pyogrio.write_dataframe(AUGUST_LEADS, path, layer="leads")
    with pytest.raises(InputError, match="not an eoleads lead register"):
        RegisterCheck.against(path, AUGUST_LEADS, SEPTEMBER, "EPSG:4490")


def test_the_command_shows_and_exports_the_register(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "register.gpkg"
    commit(path, AUGUST_LEADS, AUGUST)
    edit_as_qgis_does(path, "UPDATE register SET review_outcome=? WHERE register_id='GR-a'", REJECTED)
    out = tmp_path / "leads.csv"
    assert main(["register", str(path), "--export", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "2 lead(s)" in shown and "grassland" in shown and f"{REJECTED} 1" in shown and "2025-08" in shown
    table = pd.read_csv(out, encoding="utf-8-sig", keep_default_na=False)
    assert list(table.register_id) == ["GR-a", "MN-b"] and table.review_outcome.tolist() == [REJECTED, ""]
    assert main(["register", str(path), "--export", str(tmp_path / "leads.xlsx")]) == 0
    book = pd.read_excel(tmp_path / "leads.xlsx", keep_default_na=False)
    assert list(book.register_id) == ["GR-a", "MN-b"] and list(book.category_zh) == ["草原破坏", "矿场"]
    assert main(["register", str(path), "--export", str(tmp_path / "leads.txt")]) == 2
    assert main(["register", str(tmp_path / "none.gpkg")]) == 2


def test_the_register_option(tmp_path: Path) -> None:
    base = {"name": "t", "aoi": ["aoi.geojson"], "output": "runs/2025-08",
            "source": {"type": "local", "paths": ["*.tif"]},
            "windows": {"baseline": {"start": "2024-07-01", "end": "2024-08-31"},
                        "monitoring": {"start": "2025-07-01", "end": "2025-08-31"}}}
    config_path = tmp_path / "run.yaml"
    assert parse_config(base, config_path).lead_register == tmp_path.resolve() / "runs" / "register.gpkg"
    assert parse_config({**base, "register": None}, config_path).lead_register is None
    assert parse_config({**base, "register": "shared/leads.gpkg"}, config_path).lead_register == (
        tmp_path.resolve() / "shared" / "leads.gpkg")
    assert "register" in parse_config(base, config_path).model_dump()  # written back as it is spelled


# --- end to end --------------------------------------------------------------------------------------------------

def _demo_month(demo_run: Path, folder: Path) -> Path:
    """The demo's finished run copied into `folder` (its cells resume), evidence off; the register
    is the default one in `folder`'s parent."""
    shutil.copytree(demo_run, folder, ignore=shutil.ignore_patterns("evidence", "*.png"))
    path = folder / "demo.yaml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["evidence"] = False
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.slow
def test_demo_runs_against_the_register(demo_run: Path, tmp_path: Path) -> None:
    from pipeline.config import load_config
    from pipeline.run import run

    august, september = _demo_month(demo_run, tmp_path / "2025-08"), _demo_month(demo_run, tmp_path / "2025-09")
    first = run(load_config(august), august, progress=False)
    assert first.counts["cells_resumed"] == first.counts["cells"] and len(first.leads)
    assert set(first.leads.status) == {NEW} and first.counts["leads_new"] == len(first.leads)

    second = run(load_config(september), september, progress=False)
    written = pyogrio.read_dataframe(second.geopackage, layer="leads")
    assert set(written.status) == {PERSISTING} and second.counts["leads_new"] == 0
    assert len(written) == len(first.leads) and (written.register_id == written.lead_id).all()  # same window
    register_path = tmp_path / "register.gpkg"
    assert len(pyogrio.read_dataframe(register_path, layer=LAYER)) == len(first.leads)

    rejected = written.lead_id.iloc[0]
    edit_as_qgis_does(register_path, "UPDATE register SET review_outcome=?, reviewer=?, review_date=? "
                                     "WHERE register_id=?", REJECTED, "王", "2025-09-20", rejected)
    third = run(load_config(september), september, progress=False)
    written = pyogrio.read_dataframe(third.geopackage, layer="leads")
    assert rejected not in set(written.lead_id) and len(written) == len(first.leads) - 1
    assert third.counts["leads_suppressed"] == 1 and any("left out" in n for n in third.notes)
    table = dict(pyogrio.read_dataframe(third.geopackage, layer="run")[["key", "value"]].values)
    assert table["count_leads_suppressed"] == "1"
    row = pyogrio.read_dataframe(register_path, layer=LAYER).set_index("register_id").loc[rejected]
    assert (row.review_outcome, row.reviewer, row.status) == (REJECTED, "王", REVIEWED)
    assert row.review_area_m2 == pytest.approx(row.area_m2)  # the area the reviewer saw
    assert not any(p.name.endswith(("-wal", "-journal")) for p in tmp_path.iterdir())
    assert os.path.exists(backup_path(register_path))
