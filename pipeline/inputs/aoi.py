"""Areas of interest: read any vector format in any CRS, repair what can be repaired."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import shapely
from shapely.geometry.base import BaseGeometry

from pipeline.errors import InputError
from pipeline.inputs.placement import likely_cause, off_earth
from pipeline.inputs.vectors import read_vector, repair_polygons
from pipeline.paths import AOI_DIR


@dataclass
class AOI:
    """The union of all AOI polygons in WGS84, with what was repaired or dropped."""

    geometry: BaseGeometry
    features: gpd.GeoDataFrame
    notes: list[str] = field(default_factory=list)


def read_aoi(paths: list[Path]) -> AOI:
    """Read and merge AOI files into one WGS84 geometry; empty input is an error."""
    frames, notes = [], []
    for path in paths:
        gdf = read_vector(Path(path), what="AOI")
        gdf = repair_polygons(gdf, Path(path), notes)
        if gdf.empty:
            raise InputError(path, "geometry", "the AOI holds no polygon with an area",
                             "draw at least one polygon (points and lines are not areas)")
        gdf = _on_earth(gdf, Path(path))
        gdf["source_file"] = Path(path).name
        frames.append(gdf[["source_file", "geometry"]])
    features = gpd.GeoDataFrame(gpd.pd.concat(frames, ignore_index=True), crs="EPSG:4326")
    geometry = shapely.union_all(features.geometry.values)
    if geometry.is_empty or geometry.area == 0:
        raise InputError(paths[0], "geometry", "the AOI polygons have no area", "check the AOI geometry")
    return AOI(geometry=geometry, features=features, notes=notes)


def _on_earth(gdf: gpd.GeoDataFrame, path: Path) -> gpd.GeoDataFrame:
    """The AOI in WGS84, refused when its numbers do not mean what its CRS says.

    Gauss-Krüger eastings without their zone prefix, swapped axes or a wrong .prj reproject to
    infinite or impossible coordinates without any error; the grid of cells would then fail far
    from the cause, or cover the wrong place.
    """
    wgs84 = gdf.to_crs("EPSG:4326")
    bad = off_earth(wgs84.geometry)
    if bad.any():
        cause = likely_cause(gdf.geometry)
        raise InputError(path, "crs", f"{int(bad.sum())} of {len(gdf)} AOI polygon(s) have impossible coordinates "
                         f"once reprojected from the layer's CRS ({gdf.crs.name}) to longitude and latitude"
                         + (f": likely {cause.problem}" if cause else ""),
                         cause.fix if cause else "check that the CRS the file declares (its .prj) is the one its "
                         "coordinates are in, and that x is the easting or longitude")
    return wgs84


def hulun_lake() -> tuple[BaseGeometry, BaseGeometry]:
    """The Hulun Lake outline and its protection zone shipped in aoi/, in WGS84."""
    lake = gpd.read_file(AOI_DIR / "hulun_lake.geojson").to_crs("EPSG:4326").geometry.iloc[0]
    zone = gpd.read_file(AOI_DIR / "hulun_lake_protection_zone.geojson").to_crs("EPSG:4326").geometry.iloc[0]
    return lake, zone
