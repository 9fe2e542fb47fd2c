"""Write GeoPackages atomically: readers see the old file or the new one, never half of one.

The file opens in QGIS without set-up: each eoleads layer has its default style (`layer_styles`),
every column its Chinese alias in the GeoPackage's own schema tables (`gpkg_data_columns`, read
by GDAL ≥ 3.7 and QGIS as field aliases), and a project in `qgis_projects` shows the layers in
order with the probability rasters below them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import rasterio

from pipeline.atomic import atomic_path
from pipeline.outputs.qgis_project import ProjectLayer, project_qgz, project_row, project_xml
from pipeline.outputs.qgis_style import default_styles, field_aliases, layer_styles, probability_style_qml

#: Top to bottom in the stored project: what to look at first on top, the frame below.
PROJECT_ORDER = ("leads", "detections", "permits", "aoi", "cells")
LAYER_TITLES = {"leads": "线索 leads", "detections": "检测 detections", "permits": "许可 permits",
                "aoi": "监测范围 AOI", "cells": "格网 cells"}
_SCHEMA_EXTENSION = "http://www.geopackage.org/spec/#extension_schema"
_SCHEMA_DDL = (
    "CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT, extension_name TEXT NOT NULL, "
    "definition TEXT NOT NULL, scope TEXT NOT NULL, "
    "CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))",
    "CREATE TABLE IF NOT EXISTS gpkg_data_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL, name TEXT, "
    "title TEXT, description TEXT, mime_type TEXT, constraint_name TEXT, "
    "CONSTRAINT pk_gdc PRIMARY KEY (table_name, column_name), CONSTRAINT gdc_tn UNIQUE (table_name, name))",
    "CREATE TABLE IF NOT EXISTS gpkg_data_column_constraints (constraint_name TEXT NOT NULL, "
    "constraint_type TEXT NOT NULL, value TEXT, min NUMERIC, min_is_inclusive BOOLEAN, max NUMERIC, "
    "max_is_inclusive BOOLEAN, description TEXT, CONSTRAINT gdcc_ntv UNIQUE (constraint_name, constraint_type, value))",
    "CREATE TABLE IF NOT EXISTS qgis_projects (name TEXT PRIMARY KEY, metadata BLOB, content BLOB)",
)


def write_geopackage(path: Path, layers: dict[str, gpd.GeoDataFrame | pd.DataFrame],
                     rasters: Sequence[Path] = ()) -> Path:
    """Write every layer into a temporary file beside `path`, then move it into place.

    Spatial layers are written as MultiPolygon, the one type QGIS styles and edits without
    surprises; plain DataFrames become attribute-only tables. `rasters` (probability VRTs) join
    the stored project, below the vector layers.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spatial = {name: frame for name, frame in layers.items() if isinstance(frame, gpd.GeoDataFrame)}
    styles = default_styles({name: list(frame.columns.drop(frame.geometry.name)) for name, frame in spatial.items()})
    with atomic_path(path) as tmp:
        for name, frame in layers.items():
            if name in spatial:
                pyogrio.write_dataframe(frame, tmp, layer=name, driver="GPKG", geometry_type="MultiPolygon",
                                        promote_to_multi=True)
            else:
                pyogrio.write_dataframe(frame, tmp, layer=name, driver="GPKG")
        if styles:
            pyogrio.write_dataframe(layer_styles(styles), tmp, layer="layer_styles", driver="GPKG")
        with closing(sqlite3.connect(tmp)) as db, db:
            for statement in _SCHEMA_DDL:
                db.execute(statement)
            _write_aliases(db, layers)
            if styles:
                db.execute("INSERT INTO qgis_projects VALUES (?, ?, ?)",
                           project_row(project_qgz(_project(path, spatial, styles, rasters))))
    return path


def _write_aliases(db: sqlite3.Connection, layers: dict[str, gpd.GeoDataFrame | pd.DataFrame]) -> None:
    """Each column's Chinese alias as its `name` and `title` in `gpkg_data_columns`."""
    rows = [(layer, column, alias, alias, f"{column}: {alias}")
            for layer, frame in layers.items() for column, alias in field_aliases(frame.columns).items()]
    db.executemany("INSERT INTO gpkg_data_columns (table_name, column_name, name, title, description) "
                   "VALUES (?, ?, ?, ?, ?)", rows)
    db.executemany("INSERT OR IGNORE INTO gpkg_extensions VALUES (?, NULL, 'gpkg_schema', ?, 'read-write')",
                   [("gpkg_data_columns", _SCHEMA_EXTENSION), ("gpkg_data_column_constraints", _SCHEMA_EXTENSION)])


def _project(path: Path, spatial: dict[str, gpd.GeoDataFrame], styles: dict[str, str],
             rasters: Sequence[Path]) -> str:
    """The stored project's XML: the styled layers in PROJECT_ORDER (then any other styled one),
    each probability band below them, hidden until ticked."""
    order = [n for n in PROJECT_ORDER if n in styles] + [n for n in styles if n not in PROJECT_ORDER]
    layers = [ProjectLayer(f"eoleads_{name}", LAYER_TITLES.get(name, name), f"./{path.name}|layername={name}",
                           _wkt(spatial[name].crs), styles[name]) for name in order]
    for raster in rasters:
        source = "./" + Path(os.path.relpath(raster, path.parent)).as_posix()
        with rasterio.open(raster) as src:
            crs, names = _wkt(src.crs), src.descriptions
        layers += [ProjectLayer(f"eoleads_{Path(raster).stem}_{band}", f"概率 {name or band} ({Path(raster).stem})",
                                source, crs, probability_style_qml(band), raster=True, visible=False)
                   for band, name in enumerate(names, start=1)]
    frames = [f for f in spatial.values() if len(f)]
    bounds = pd.DataFrame([f.total_bounds for f in frames]) if frames else pd.DataFrame([[0.0, 0.0, 1.0, 1.0]])
    extent = (bounds[0].min(), bounds[1].min(), bounds[2].max(), bounds[3].max())
    return project_xml(layers, _wkt(spatial[order[0]].crs), extent)


def _wkt(crs: object) -> str | None:
    return crs.to_wkt() if crs else None
