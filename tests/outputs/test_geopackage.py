import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
from shapely.geometry import MultiPolygon, box

from pipeline.outputs.geopackage import write_geopackage


def _layers():
    polys = gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=[box(0, 0, 1, 1), MultiPolygon([box(2, 2, 3, 3)])],
                             crs="EPSG:4490")
    return {"leads": polys, "run": pd.DataFrame({"key": ["k"], "value": ["v"]})}


def test_geopackage_is_readable_by_gdal_with_crs_and_multipolygons(tmp_path):
    path = write_geopackage(tmp_path / "out.gpkg", _layers())
    layers = dict(pyogrio.list_layers(path))
    assert layers == {"leads": "MultiPolygon", "run": None}
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
