"""Permit layers: read through the configured column mapping into one normalised table.

Real registers arrive with Chinese column names, CGCS2000 coordinates, broken geometries, text
in GBK and dates in every notation. A missing column, an unknown type value, garbled text, a
date that could be read two ways, a layer that reprojects far from the AOI or one permit id
with two different records stops the run with an error that says what to fix: each would
otherwise silently decide which changes are excused. A missing or unreadable date does not:
that permit is kept, shown, and never exempts anything, because a permit whose validity cannot
be established cannot excuse a change. Each such permit is listed in the run notes, by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from detectors.categories import PermitType
from pipeline.config import PermitLayer
from pipeline.errors import InputError
from pipeline.inputs.dates import AmbiguousDate, DayMonthOrder, ShortYear, UnreadableDate, parse_date
from pipeline.inputs.placement import CHECK_CRS, NEAR_KM, distance_km, misplaced
from pipeline.inputs.vectors import check_text, name_features, read_vector, repair_polygons

PERMIT_FIELDS = ("permit_id", "permit_type", "holder", "valid_from", "valid_to", "reclaim_by")
#: The register's own columns are kept, values as read, under this prefix: 许可证号 as src_许可证号.
ORIGINAL_PREFIX = "src_"
_DATE_FIELDS = ("valid_from", "valid_to", "reclaim_by")


@dataclass
class Permits:
    """Normalised permits (WGS84) and notes on what was repaired or is unusable."""

    table: gpd.GeoDataFrame
    notes: list[str] = field(default_factory=list)


def _empty() -> gpd.GeoDataFrame:
    cols = {**{f: pd.Series(dtype=object) for f in PERMIT_FIELDS}, "source_file": pd.Series(dtype=object),
            "issues": pd.Series(dtype=object)}
    return gpd.GeoDataFrame(cols, geometry=gpd.GeoSeries([], crs="EPSG:4326"), crs="EPSG:4326")


def read_permit_layer(cfg: PermitLayer, aoi_wgs84: BaseGeometry, index: int = 0) -> Permits:
    """One permit file as normalised permits, placed near the AOI (WGS84)."""
    notes: list[str] = []
    encoding_option = f"permits[{index}].encoding"
    raw = read_vector(cfg.path, cfg.layer, what="permit layer", encoding=cfg.encoding,
                      encoding_option=encoding_option)
    check_text(raw, cfg.path, cfg.encoding, encoding_option, notes)
    mapping = _mapping(raw, cfg, index)
    id_column = mapping["permit_id"]
    raw[id_column] = raw[id_column].astype(str)
    if raw.empty:
        return Permits(_empty(), [f"{cfg.path.name}: the permit layer holds no permits"])
    gdf = repair_polygons(raw, cfg.path, notes, id_column)
    if gdf.empty:
        raise InputError(cfg.path, "geometry", "the permit layer holds no polygon with an area",
                         "give the permits' boundaries as polygons (points and lines cannot cover a change)")
    gdf = repair_polygons(_placed(gdf, aoi_wgs84, cfg, index, id_column, notes), cfg.path, notes, id_column)
    out = gpd.GeoDataFrame(geometry=gdf.geometry.values, crs="EPSG:4326")
    out["permit_id"] = gdf[id_column].values
    out["permit_type"] = _permit_types(gdf, cfg, mapping, index)
    out["holder"] = gdf[mapping["holder"]].astype(str).values if mapping.get("holder") else None
    issues: list[list[str]] = [[] for _ in range(len(gdf))]
    refused: list[tuple[str, AmbiguousDate]] = []
    for name in _DATE_FIELDS:
        column = mapping.get(name)
        out[name] = None if column is None else _dates(gdf, column, name, id_column, cfg, issues, refused)
    if refused:
        raise _refused_dates(cfg, index, refused)
    out["source_file"] = cfg.path.name
    out["issues"] = ["; ".join(i) for i in issues]
    for column in gdf.columns.drop(gdf.geometry.name):  # the register as it was, beside the normalised fields
        out[f"{ORIGINAL_PREFIX}{column}"] = gdf[column].to_numpy()
    undated = out[out.issues.str.contains("valid_from|valid_to")]
    if len(undated):
        notes.append(f"{cfg.path.name}: {len(undated)} permit(s) without usable dates cannot exempt any change: "
                     + ", ".join(f"{r.permit_id} ({r.issues})" for r in undated.itertuples())[:500])
    unclear = out[(out.issues != "") & ~out.index.isin(undated.index)]
    if len(unclear):
        notes.append(f"{cfg.path.name}: {len(unclear)} permit(s) with an unreadable reclamation deadline "
                     "(read as none given): "
                     + ", ".join(f"{r.permit_id} ({r.issues})" for r in unclear.itertuples())[:500])
    return Permits(out, notes)


def _mapping(raw: gpd.GeoDataFrame, cfg: PermitLayer, index: int) -> dict[str, str | None]:
    """The configured column of each normalised field, checked against the layer's columns."""
    mapping = cfg.columns.model_dump()
    have = [c for c in raw.columns if c != "geometry"]
    for name, column in mapping.items():
        if column is None:
            continue
        if column not in raw.columns and not (name == "permit_type" and cfg.default_type):
            optional = name in ("holder", "reclaim_by")
            if optional and column == name:  # default optional column simply absent
                mapping[name] = None
                continue
            field = f"permits[{index}].columns.{name}"
            raise InputError(cfg.path, field, f"column {column!r} is not in the layer (it has: {', '.join(have)})",
                             f"set {field} to the column that holds the {name.replace('_', ' ')}")
    return mapping


def _placed(gdf: gpd.GeoDataFrame, aoi_wgs84: BaseGeometry, cfg: PermitLayer, index: int, id_column: str,
            notes: list[str]) -> gpd.GeoDataFrame:
    """The layer in WGS84, without permits that land far from the AOI; most of them is an error.

    A layer whose coordinates do not mean what its CRS says reprojects to infinity or elsewhere
    without complaint, and then exempts nothing: every change becomes a lead. A few stray
    permits are dropped and named; when most stray the layer is refused with the likely cause.
    """
    wgs84 = gdf.to_crs("EPSG:4326")
    if wgs84.empty:
        return wgs84
    km = distance_km(wgs84.geometry, aoi_wgs84)
    away = km > NEAR_KM
    if 2 * away.sum() > len(wgs84):
        raise misplaced(
            cfg.path, f"{int(away.sum())} of {len(wgs84)} permits ({name_features(wgs84, away, id_column, 5)}) lie "
            f"more than {NEAR_KM:.0f} km from the AOI or have impossible coordinates once reprojected from "
            f"{gdf.crs.name}", gdf.geometry[away], aoi_wgs84,
            f"{CHECK_CRS}; a register of a wider region than the AOI can be clipped to within {NEAR_KM:.0f} km of it")
    if away.any():
        strays = [f"{pid} ({'impossible coordinates' if np.isinf(d) else f'{d:.0f} km away'})"
                  for pid, d in zip(wgs84[id_column][away], km[away], strict=True)]
        notes.append(f"{cfg.path.name}: dropped {len(strays)} permit(s) more than {NEAR_KM:.0f} km from the AOI "
                     f"or with impossible coordinates; they exempt nothing: {', '.join(strays[:20])}"
                     + (f" and {len(strays) - 20} more" if len(strays) > 20 else ""))
    return wgs84[~away]


def _dates(gdf: gpd.GeoDataFrame, column: str, name: str, id_column: str, cfg: PermitLayer,
           issues: list[list[str]], refused: list[tuple[str, AmbiguousDate]]) -> list:
    """One date column read without guessing; unreadable values become issues, ambiguous ones refusals."""
    out = []
    for i, (pid, value) in enumerate(zip(gdf[id_column], gdf[column].tolist(), strict=True)):
        try:
            parsed = parse_date(value, cfg.date_order, open_ended=name != "valid_from")
        except AmbiguousDate as exc:
            refused.append((f"{pid} {column} {value!r} ({exc})", exc))
            parsed = None
        except UnreadableDate:
            issues[i].append(f"{name} unreadable ({value!r})")
            parsed = None
        else:
            if parsed is None and name != "reclaim_by":  # no reclamation deadline given is allowed
                issues[i].append(f"{name} missing")
        out.append(parsed)
    return out


def _refused_dates(cfg: PermitLayer, index: int, refused: list[tuple[str, AmbiguousDate]]) -> InputError:
    """Dates that cannot be read without guessing: say which, and how to make them certain."""
    listed = "; ".join(text for text, _ in refused[:10])
    listed += f"; and {len(refused) - 10} more" if len(refused) > 10 else ""
    kinds = {type(exc) for _, exc in refused}
    fixes = []
    if DayMonthOrder in kinds:
        fixes.append(f"set permits[{index}].date_order to DMY (01/04/2024 is 1 April) or MDY (January 4) for "
                     "dates written with the year last")
    if ShortYear in kinds:
        fixes.append("write every year with four digits in the file")
    field = f"permits[{index}].date_order" if DayMonthOrder in kinds else f"permits[{index}].columns"
    return InputError(cfg.path, field, f"{len(refused)} date(s) cannot be read without guessing: {listed}",
                      "; ".join(fixes))


def _permit_types(gdf: gpd.GeoDataFrame, cfg: PermitLayer, mapping: dict, index: int) -> list[str]:
    column = mapping.get("permit_type")
    if column is None or column not in gdf.columns:
        if cfg.default_type is None:
            raise InputError(cfg.path, f"permits[{index}].columns.permit_type", "no permit type column",
                             f"map the type column, or set permits[{index}].default_type")
        return [cfg.default_type.value] * len(gdf)
    raw = gdf[column].where(gdf[column].astype("string").str.strip() != "")  # blank cells are missing too
    if raw.isna().any():
        if cfg.default_type is None:
            ids = ", ".join(gdf.loc[raw.isna(), mapping["permit_id"]].astype(str).head(10))
            raise InputError(cfg.path, f"permits[{index}].columns.permit_type",
                             f"{int(raw.isna().sum())} permit(s) have no type ({ids})",
                             f"fill in the type in the file, or set permits[{index}].default_type for them")
        raw = raw.fillna(cfg.default_type.value)
    values = raw.astype(str).str.strip()
    known = {t.value for t in PermitType}
    mapped = [cfg.type_values[v].value if v in cfg.type_values else (v if v in known else None) for v in values]
    unknown = sorted({v for v, m in zip(values, mapped, strict=True) if m is None})
    if unknown:
        raise InputError(cfg.path, f"permits[{index}].type_values",
                         f"permit type value(s) {', '.join(map(repr, unknown))} in column {column!r} are not mapped",
                         f"add them to permits[{index}].type_values, each mapped to one of: {', '.join(sorted(known))}")
    return mapped


def load_permits(layers: list[PermitLayer], aoi_wgs84: BaseGeometry) -> Permits:
    """All permit layers of a run as one table, one record per permit id, near the AOI (WGS84)."""
    if not layers:
        return Permits(_empty(), ["no permit layer configured: every change is a lead"])
    parts = [read_permit_layer(cfg, aoi_wgs84, i) for i, cfg in enumerate(layers)]
    table = gpd.GeoDataFrame(pd.concat([p.table for p in parts], ignore_index=True), crs="EPSG:4326")
    layer_of = np.repeat(np.arange(len(parts)), [len(p.table) for p in parts])
    table, notes = _merge_duplicates(table, layers, layer_of)
    return Permits(table, [n for p in parts for n in p.notes] + notes)


def _merge_duplicates(table: gpd.GeoDataFrame, layers: list[PermitLayer], layer_of: np.ndarray
                      ) -> tuple[gpd.GeoDataFrame, list[str]]:
    """One record per permit id: identical copies are merged, parcels of one permit joined, conflicts refused.

    Two records of one id with different types or dates cannot both be right, and which one
    exempts a change would depend on row order. Records that differ only in their geometry are
    the parcels of one permit (a register lists each parcel as a feature) and are joined.
    """
    repeated = table.permit_id.duplicated(keep=False).to_numpy()
    if not repeated.any():
        return table, []
    notes, drop = [], []
    attributes = [f for f in PERMIT_FIELDS if f != "permit_id"]
    for pid, group in table[repeated].groupby("permit_id", sort=False):
        differing = [f for f in attributes if group[f].map(str).nunique() > 1]
        files = [layers[i].path.name for i in layer_of[group.index]]
        if differing:
            first = layer_of[group.index[0]]
            details = "; ".join(f"{f}: " + ", ".join(f"{v} ({name})" for v, name in zip(group[f], files, strict=True))
                                for f in differing)
            raise InputError(layers[first].path, f"permits[{first}].columns.permit_id",
                             f"permit {pid!r} appears {len(group)} times with different {', '.join(differing)} "
                             f"({details})", "keep one record per permit: remove the outdated one, or correct the id")
        where = " and ".join(sorted(set(files)))
        geometries = group.geometry.to_numpy()
        if all(shapely.equals(g, geometries[0]) for g in geometries[1:]):
            notes.append(f"{where}: permit {pid} is listed {len(group)} times identically; read once")
        else:
            table.loc[group.index[0], "geometry"] = shapely.union_all(geometries)
            notes.append(f"{where}: permit {pid} has {len(group)} features with the same type and dates; "
                         "read as one permit of several parcels")
        drop.extend(group.index[1:])
    return table.drop(index=drop).reset_index(drop=True), notes
