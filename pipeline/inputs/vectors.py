"""Vector layers as users hand them in: any format and CRS, geometries repaired and accounted for."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from shapely.geometry.base import BaseGeometry

from pipeline.errors import InputError

log = logging.getLogger(__name__)


def read_vector(path: Path, layer: str | None = None, what: str = "layer", encoding: str | None = None,
                encoding_option: str | None = None) -> gpd.GeoDataFrame:
    """Read a GeoJSON, GeoPackage or Shapefile with a clear error for missing files, CRS or encoding.

    `encoding` overrides what the file says (a Shapefile's .cpg); `encoding_option` names the
    configuration field that sets it, for the error when the text cannot be decoded.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, f"{what} file not found", "check the path in the configuration")
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio", encoding=encoding)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise InputError(path, "layer" if layer else None, f"cannot be read as a vector {what}: {exc}",
                         "give a GeoJSON, GeoPackage or Shapefile (and the layer name for a multi-layer file)"
                         ) from None
    except UnicodeDecodeError as exc:
        raise InputError(path, encoding_option, f"the {what}'s text cannot be decoded as {exc.encoding} "
                         f"({'as configured' if encoding else 'as the file declares or GDAL assumes'})",
                         encoding_fix(encoding_option)) from None
    if gdf.crs is None:
        raise InputError(path, "crs", f"the {what} has no coordinate reference system",
                         "save it with its CRS (a .prj beside a Shapefile, or re-export from QGIS)")
    return gdf


def encoding_fix(encoding_option: str | None) -> str:
    """What to do about text in the wrong encoding: most Chinese Shapefiles without a .cpg are GBK."""
    if encoding_option:
        return f"set {encoding_option}: GBK (most Chinese Shapefiles without a .cpg file are GBK)"
    return "re-export the file as UTF-8 (QGIS: Export > Save Features As, encoding UTF-8)"


#: Characters that GBK text read as Latin-1 is made of: every Chinese character becomes two of them.
_LATIN1_HIGH = re.compile("[\u0080-\u00ff]")


def garbled_text(gdf: gpd.GeoDataFrame) -> str | None:
    """An example of text that reads as Chinese once decoded as GBK (mojibake), or None.

    A Shapefile without a .cpg is decoded as Latin-1, which turns GBK Chinese into strings like
    'Ðí¿ÉÖ¤ºÅ' (许可证号). Column names are checked too. A string counts only when it is made
    of Latin-1 characters, at least four of them outside ASCII, and decodes as GBK into Chinese.
    """
    columns = [c for c in gdf.columns if c != "geometry"]
    texts = [str(c) for c in columns]
    for column in columns:
        texts.extend(v for v in gdf[column].dropna().unique()[:50] if isinstance(v, str))
    for text in texts:
        if "\ufffd" in text:
            return f"{text!r} (contains undecodable characters)"
        if len(_LATIN1_HIGH.findall(text)) < 4 or max(map(ord, text)) > 0xFF:
            continue
        try:
            decoded = text.encode("latin-1").decode("gbk")
        except UnicodeDecodeError:
            continue
        if re.search("[\u4e00-\u9fff]", decoded):
            return f"{text!r} (reads as {decoded!r} in GBK)"
    return None


def check_text(gdf: gpd.GeoDataFrame, path: Path, encoding: str | None, encoding_option: str, notes: list[str]
               ) -> None:
    """Refuse text that reads as Chinese once decoded as GBK: columns and values would not match.

    With an encoding configured the text is only noted, in case real Latin-1 text looks garbled.
    """
    example = garbled_text(gdf)
    if example is None:
        return
    if encoding is None:
        raise InputError(path, encoding_option, f"the text in the layer looks garbled, e.g. {example}: "
                         "the file does not say its encoding (a Shapefile without a .cpg file)",
                         encoding_fix(encoding_option))
    notes.append(f"{path.name}: text read as {encoding} still looks garbled, e.g. {example}; check {encoding_option}")


def repair_polygons(gdf: gpd.GeoDataFrame, path: Path, notes: list[str], id_column: str | None = None
                    ) -> gpd.GeoDataFrame:
    """Make geometries valid and polygonal; say which were repaired and which were dropped.

    With `id_column` features are named by their ids, as the user knows them; otherwise by row.
    """
    invalid = ~gdf.geometry.is_valid & gdf.geometry.notna()
    if invalid.any():
        gdf = gdf.copy()
        gdf.loc[invalid, "geometry"] = shapely.make_valid(gdf.geometry[invalid].values)
        count = int(invalid.sum())
        _note(notes, f"{path.name}: repaired {count} invalid geometr{'y' if count == 1 else 'ies'} "
                     f"({name_features(gdf, invalid, id_column)})")
    polygonal = gdf.geometry.apply(_polygonal_part)
    empty = (polygonal.isna() | polygonal.apply(lambda g: g is None or g.is_empty)).astype(bool)  # also when 0 rows
    if empty.any():
        _note(notes, f"{path.name}: dropped {int(empty.sum())} empty or non-polygon feature(s) "
                     f"({name_features(gdf, empty, id_column)})")
    out = gdf.copy()
    out[gdf.geometry.name] = gpd.GeoSeries(polygonal.values, index=gdf.index, crs=gdf.crs)  # stays geometry
    return out[~empty]


def name_features(gdf: gpd.GeoDataFrame, which: pd.Series | np.ndarray, id_column: str | None = None,
                  limit: int = 10) -> str:
    """The selected features by id ("ids A1, A2") or row number ("rows [3, 5]"), at most `limit`."""
    which = np.asarray(which, dtype=bool)
    if id_column is None:
        return f"rows {list(gdf.index[which])[:limit]}"
    chosen = gdf[id_column][which].astype(str).tolist()
    more = f" and {len(chosen) - limit} more" if len(chosen) > limit else ""
    return f"ids {', '.join(chosen[:limit])}{more}"


def _note(notes: list[str], msg: str) -> None:
    log.info(msg)
    notes.append(msg)


def _polygonal_part(geom: BaseGeometry | None) -> BaseGeometry | None:
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else None
