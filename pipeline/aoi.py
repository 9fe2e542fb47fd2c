"""Areas of interest: read any vector format in any CRS, repair what can be repaired."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely
from shapely.geometry.base import BaseGeometry

from pipeline.errors import InputError
from pipeline.paths import AOI_DIR

log = logging.getLogger(__name__)


@dataclass
class AOI:
    """The union of all AOI polygons in WGS84, with what was repaired or dropped."""

    geometry: BaseGeometry
    features: gpd.GeoDataFrame
    notes: list[str] = field(default_factory=list)


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


def read_aoi(paths: list[Path]) -> AOI:
    """Read and merge AOI files into one WGS84 geometry; empty input is an error."""
    frames, notes = [], []
    for path in paths:
        gdf = read_vector(Path(path), what="AOI")
        gdf = repair_polygons(gdf, Path(path), notes)
        if gdf.empty:
            raise InputError(path, "geometry", "the AOI holds no polygon with an area",
                             "draw at least one polygon (points and lines are not areas)")
        gdf = gdf.to_crs("EPSG:4326")
        gdf["source_file"] = Path(path).name
        frames.append(gdf[["source_file", "geometry"]])
    features = gpd.GeoDataFrame(gpd.pd.concat(frames, ignore_index=True), crs="EPSG:4326")
    geometry = shapely.union_all(features.geometry.values)
    if geometry.is_empty or geometry.area == 0:
        raise InputError(paths[0], "geometry", "the AOI polygons have no area", "check the AOI geometry")
    return AOI(geometry=geometry, features=features, notes=notes)


def hulun_lake() -> tuple[BaseGeometry, BaseGeometry]:
    """The Hulun Lake outline and its protection zone shipped in aoi/, in WGS84."""
    lake = gpd.read_file(AOI_DIR / "hulun_lake.geojson").to_crs("EPSG:4326").geometry.iloc[0]
    zone = gpd.read_file(AOI_DIR / "hulun_lake_protection_zone.geojson").to_crs("EPSG:4326").geometry.iloc[0]
    return lake, zone
