"""Write GeoPackages atomically: readers see the old file or the new one, never half of one."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from pipeline.atomic import atomic_path


def write_geopackage(path: Path, layers: dict[str, gpd.GeoDataFrame | pd.DataFrame]) -> Path:
    """Write every layer into a temporary file beside `path`, then move it into place.

    Spatial layers are written as MultiPolygon, the one type QGIS styles and edits without
    surprises; plain DataFrames become attribute-only tables.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        for name, frame in layers.items():
            if isinstance(frame, gpd.GeoDataFrame):
                pyogrio.write_dataframe(frame, tmp, layer=name, driver="GPKG", geometry_type="MultiPolygon",
                                        promote_to_multi=True)
            else:
                pyogrio.write_dataframe(frame, tmp, layer=name, driver="GPKG")
    return path
