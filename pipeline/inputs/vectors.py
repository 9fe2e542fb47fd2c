"""Vector layers as users hand them in: any format and CRS, geometries repaired and accounted for."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely
from shapely.geometry.base import BaseGeometry

from pipeline.errors import InputError

log = logging.getLogger(__name__)


def read_vector(path: Path, layer: str | None = None, what: str = "layer") -> gpd.GeoDataFrame:
    """Read a GeoJSON, GeoPackage or Shapefile with a clear error for missing files or CRS."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, f"{what} file not found", "check the path in the configuration")
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise InputError(path, "layer" if layer else None, f"cannot be read as a vector {what}: {exc}",
                         "give a GeoJSON, GeoPackage or Shapefile (and the layer name for a multi-layer file)"
                         ) from None
    if gdf.crs is None:
        raise InputError(path, "crs", f"the {what} has no coordinate reference system",
                         "save it with its CRS (a .prj beside a Shapefile, or re-export from QGIS)")
    return gdf


def repair_polygons(gdf: gpd.GeoDataFrame, path: Path, notes: list[str]) -> gpd.GeoDataFrame:
    """Make geometries valid and polygonal; say which were repaired and which were dropped."""
    invalid = ~gdf.geometry.is_valid & gdf.geometry.notna()
    if invalid.any():
        gdf = gdf.copy()
        gdf.loc[invalid, "geometry"] = shapely.make_valid(gdf.geometry[invalid].values)
        rows = list(gdf.index[invalid])
        msg = f"{path.name}: repaired {len(rows)} invalid geometr{'y' if len(rows) == 1 else 'ies'} (rows {rows[:10]})"
        log.info(msg)
        notes.append(msg)
    polygonal = gdf.geometry.apply(_polygonal_part)
    empty = polygonal.isna() | polygonal.apply(lambda g: g is None or g.is_empty)
    if empty.any():
        rows = list(gdf.index[empty])
        msg = f"{path.name}: dropped {len(rows)} empty or non-polygon feature(s) (rows {rows[:10]})"
        log.info(msg)
        notes.append(msg)
    out = gdf.copy()
    out["geometry"] = polygonal
    return out[~empty]


def _polygonal_part(geom: BaseGeometry | None) -> BaseGeometry | None:
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else None
