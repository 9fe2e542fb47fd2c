import errno
import io
import json
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
from shapely.geometry import MultiPolygon, box

from pipeline.errors import InputError
from pipeline.outputs.geopackage import write_geopackage


def _layers():
    polys = gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=[box(0, 0, 1, 1), MultiPolygon([box(2, 2, 3, 3)])],
                             crs="EPSG:4490")
    return {"leads": polys, "run": pd.DataFrame({"key": ["k"], "value": ["v"]})}


def test_geopackage_is_readable_by_gdal_with_crs_and_multipolygons(tmp_path):
    path = write_geopackage(tmp_path / "out.gpkg", _layers())
    layers = dict(pyogrio.list_layers(path))
    assert layers == {"leads": "MultiPolygon", "run": None, "layer_styles": None}  # leads styled for QGIS
    info = pyogrio.read_info(path, layer="leads")
    assert info["crs"] == "EPSG:4490" and info["features"] == 2
    assert pyogrio.read_dataframe(path, layer="run").value.tolist() == ["v"]
    assert not list(tmp_path.glob(".*partial*"))


def test_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = write_geopackage(tmp_path / "out.gpkg", _layers())
    before = path.read_bytes()
    real = pyogrio.write_dataframe
    calls = []

    def disk_full_on_second_layer(*args, **kwargs):
        calls.append(kwargs["layer"])
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(pyogrio, "write_dataframe", disk_full_on_second_layer)
    with pytest.raises(OSError, match="No space"):
        write_geopackage(path, _layers())
    assert calls == ["leads", "run"]
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*partial*"))


def test_a_write_failing_for_a_full_disk_names_the_file_and_the_fix(tmp_path, monkeypatch):
    path = write_geopackage(tmp_path / "out.gpkg", _layers())
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pyogrio, "write_dataframe", disk_full)
    with pytest.raises(InputError) as err:
        write_geopackage(path, _layers())
    assert err.value.path == path and "the disk is full" in err.value.problem and "free space" in err.value.fix
    assert path.read_bytes() == before


_LIMITED = """
import resource, sys
from pathlib import Path
import geopandas as gpd
from shapely.geometry import box
from pipeline.errors import InputError
from pipeline.errors import InputError
from pipeline.outputs.geopackage import write_geopackage
frame = gpd.GeoDataFrame({"name": ["x" * 200] * 300}, geometry=[box(i, 0, i + 1, 1) for i in range(300)],
                         crs="EPSG:4490")
resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))  # files stop growing at 40 kB, as on a full disk
try:
    write_geopackage(Path(sys.argv[1]), {"leads": frame})
except InputError as err:
    print(err)
"""


def test_gdal_running_out_of_space_is_named_not_a_broken_table(tmp_path):
    done = subprocess.run([sys.executable, "-c", _LIMITED, str(tmp_path / "leads.gpkg")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path / 'leads.gpkg'}: could not be written: the file grew larger" in done.stdout
    assert "gpkg_contents" not in done.stdout and "free space" in done.stdout
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def _eoleads_layers():
    """Every layer of a run, one feature each, with the columns the styles and aliases are for."""
    def frame(**columns):
        return gpd.GeoDataFrame(columns, geometry=[box(117.5, 49.0, 117.6, 49.1)], crs="EPSG:4490")

    return {"leads": frame(lead_id=["MIN-2025-0001"], category=["mine"], category_zh=["采矿"], reason=["no_permit"],
                           reason_zh=["无许可"], area_mu=[12.5], permit_notes=[""], permit_notes_zh=[""]),
            "detections": frame(category=["mine"], p_mean=[0.8], lead_id=["MIN-2025-0001"]),
            "permits": frame(permit_id=["A1"], permit_type=["mining"], **{"src_许可证号": ["A1"]}),
            "aoi": frame(source_file=["aoi.gpkg"]),
            "cells": frame(cell_id=["32650_1_2"], status=["unobserved"]),
            "run": pd.DataFrame({"key": ["name"], "value": ["test"]})}


def _probability_raster(path):
    import numpy as np
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=2, dtype="uint8", crs="EPSG:32650",
                       transform=Affine(10, 0, 500000, 0, -10, 5430000), nodata=255) as dst:
        dst.write(np.zeros((2, 4, 4), "uint8"))
        dst.set_band_description(1, "mine")
        dst.set_band_description(2, "road")
    return path


def test_every_layer_opens_in_gdal_and_the_file_is_a_sound_geopackage(tmp_path):
    path = write_geopackage(tmp_path / "leads.gpkg", _eoleads_layers(), rasters=[_probability_raster(
        tmp_path / "probabilities_32650.tif")])
    layers = dict(pyogrio.list_layers(path))
    assert layers == {"leads": "MultiPolygon", "detections": "MultiPolygon", "permits": "MultiPolygon",
                      "aoi": "MultiPolygon", "cells": "MultiPolygon", "run": None, "layer_styles": None}
    for name in layers:  # what ogrinfo would do: every layer opens and reads
        assert pyogrio.read_info(path, layer=name)["features"] >= 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_chinese_aliases_are_in_the_geopackage_schema_tables(tmp_path):
    path = write_geopackage(tmp_path / "leads.gpkg", _eoleads_layers())
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT table_name, column_name, name, title FROM gpkg_data_columns").fetchall()
        extensions = db.execute("SELECT table_name FROM gpkg_extensions WHERE extension_name = 'gpkg_schema'")
        assert {t for (t,) in extensions} == {"gpkg_data_columns", "gpkg_data_column_constraints"}
    aliases = {(table, column): name for table, column, name, title in rows if name == title}
    assert aliases[("leads", "lead_id")] == "线索编号" and aliases[("leads", "area_mu")] == "面积（亩）"
    assert aliases[("leads", "category_zh")] == "类别" and aliases[("leads", "reason_zh")] == "原因"
    assert aliases[("permits", "src_许可证号")] == "原表：许可证号" and aliases[("run", "value")] == "值"
    written = {(name, column) for name, frame in _eoleads_layers().items() for column in frame.columns
               if column != "geometry"}
    assert set(aliases) == written  # every column, and only columns that exist
    assert pyogrio.read_dataframe(path, layer="leads").columns[0] == "lead_id"  # the column names stay English


def test_layer_styles_are_the_default_and_carry_the_aliases(tmp_path):
    path = write_geopackage(tmp_path / "leads.gpkg", _eoleads_layers())
    styles = pyogrio.read_dataframe(path, layer="layer_styles").set_index("f_table_name")
    assert set(styles.index) == {"leads", "detections", "permits", "aoi", "cells"}
    assert styles.useAsDefault.all()
    for layer, qml in styles.styleQML.items():
        root = ET.fromstring(qml.split("\n", 1)[1])
        aliases = {a.get("field"): a.get("name") for a in root.iter("alias")}
        columns = [c for c in _eoleads_layers()[layer].columns if c != "geometry"]
        assert set(aliases) == set(columns), layer
    fills = [o.get("value") for o in ET.fromstring(styles.styleQML["aoi"].split("\n", 1)[1]).iter("Option")
             if o.get("name") == "style"]
    assert fills == ["no"]


def _stored_project(path):
    with sqlite3.connect(path) as db:
        name, metadata, content = db.execute("SELECT name, metadata, content FROM qgis_projects").fetchone()
    with zipfile.ZipFile(io.BytesIO(bytes.fromhex(content))) as archive:  # hex text, as QGIS stores it
        [member] = archive.namelist()
        assert member.endswith(".qgs")
        text = archive.read(member).decode("utf-8")
    return name, json.loads(metadata), ET.fromstring(text.split("\n", 1)[1])


def test_the_stored_project_shows_leads_on_top_then_the_rest_and_the_probabilities(tmp_path):
    raster = _probability_raster(tmp_path / "probabilities_32650.tif")
    path = write_geopackage(tmp_path / "leads.gpkg", _eoleads_layers(), rasters=[raster])
    name, metadata, project = _stored_project(path)
    assert name == "eoleads" and "last_modified_time" in metadata
    tree = [node.get("source") for node in project.find("layer-tree-group").iter("layer-tree-layer")]
    assert tree == [f"./leads.gpkg|layername={n}" for n in ("leads", "detections", "permits", "aoi", "cells")] + [
        "./probabilities_32650.tif"] * 2
    for source in tree:  # relative to the GeoPackage: the folder can move
        assert (tmp_path / source.split("|")[0]).exists()
    layers = {m.find("datasource").text: m for m in project.iter("maplayer")}
    leads = layers["./leads.gpkg|layername=leads"]
    assert leads.find("provider").text == "ogr" and leads.find("srs/spatialrefsys/authid").text == "EPSG:4490"
    assert leads.find("renderer-v2").get("attr") == "category" and leads.find("aliases") is not None
    bands = [m.find("pipe/rasterrenderer").get("band") for m in project.iter("maplayer") if m.get("type") == "raster"]
    assert bands == ["1", "2"]
    assert project.find("properties/Paths/Absolute").text == "false"
    assert [layer.get("id") for layer in project.find("layerorder")] == [
        m.find("id").text for m in project.iter("maplayer")]


def test_the_permit_layer_keeps_the_registers_own_columns_and_values(tmp_path):
    from pipeline.config import PermitLayer
    from pipeline.inputs.permits import load_permits

    register = gpd.GeoDataFrame({"许可证号": ["C-1"], "许可类型": ["采矿"], "批准日期": ["2024年1月1日"],
                                 "有效期至": ["2026/12/31"], "备注": ["扩界"]},
                                geometry=[box(117.50, 49.00, 117.51, 49.01)], crs="EPSG:4490")
    register.to_file(tmp_path / "permits.gpkg", engine="pyogrio")
    columns = {"permit_id": "许可证号", "permit_type": "许可类型", "valid_from": "批准日期", "valid_to": "有效期至"}
    permits = load_permits([PermitLayer(path=tmp_path / "permits.gpkg", columns=columns,
                                        type_values={"采矿": "mining"})], box(117.4, 48.9, 117.7, 49.1))
    path = write_geopackage(tmp_path / "leads.gpkg", {"permits": permits.table})
    back = pyogrio.read_dataframe(path, layer="permits")
    assert back.permit_type.tolist() == ["mining"] and str(back.valid_to[0])[:10] == "2026-12-31"
    assert back.src_许可类型.tolist() == ["采矿"] and back.src_有效期至.tolist() == ["2026/12/31"]
    assert back.src_备注.tolist() == ["扩界"] and back.src_许可证号.tolist() == ["C-1"]


@pytest.mark.slow
def test_a_run_leaves_a_geopackage_that_opens_in_qgis_without_set_up(demo_run):
    path = demo_run / "leads.gpkg"
    with sqlite3.connect(path) as db:
        aliased = set(db.execute("SELECT table_name, column_name FROM gpkg_data_columns").fetchall())
    for layer in ("leads", "detections", "permits", "aoi", "cells", "run"):
        columns = pyogrio.read_info(path, layer=layer)["fields"]
        assert {(layer, c) for c in columns} <= aliased, f"{layer}: columns without a Chinese alias"
    assert any(c.startswith("src_") for c in pyogrio.read_info(path, layer="permits")["fields"])
    leads = pyogrio.read_dataframe(path, layer="leads")
    noted = leads[leads.permit_notes != ""]
    assert len(noted) and (noted.permit_notes_zh != "").all()  # every English note has its Chinese twin
    assert noted.permit_notes_zh.str.contains("有效期|到期|不能豁免|生效").all()
    _, _, project = _stored_project(path)
    sources = [node.get("source") for node in project.find("layer-tree-group").iter("layer-tree-layer")]
    assert sources[0] == "./leads.gpkg|layername=leads" and sources[4] == "./leads.gpkg|layername=cells"
    vrts = sorted(p.name for p in demo_run.glob("probabilities_*.vrt"))
    assert vrts and {s.removeprefix("./") for s in sources[5:]} == set(vrts)
    assert all((demo_run / v).with_suffix(".qml").exists() for v in vrts)
