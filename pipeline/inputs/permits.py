"""Permit layers: read through the configured column mapping into one normalised table.

Real registers arrive with Chinese column names, CGCS2000 coordinates, broken geometries and
missing dates. A missing column or an unknown type value stops the run with an error that says
which mapping to fix; a missing or unreadable date does not: that permit is kept, shown, and
never exempts anything, because a permit whose validity cannot be established cannot excuse a
change. Each such permit is listed in the run table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import geopandas as gpd
import pandas as pd

from detectors.categories import PermitType
from pipeline.config import PermitLayer
from pipeline.errors import InputError
from pipeline.inputs.vectors import read_vector, repair_polygons

PERMIT_FIELDS = ("permit_id", "permit_type", "holder", "valid_from", "valid_to", "reclaim_by")
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


#: Open-ended approvals (长期 long-term, 永久 permanent) never expire.
OPEN_ENDED = ("长期", "永久", "长期有效")


def _parse_dates(values: pd.Series, open_ended: bool) -> pd.Series:
    """ISO, slashed and Chinese (2024年4月1日) dates; year first, as Chinese registers write them.

    With `open_ended`, 长期/永久 (an end that never comes) read as the latest date there is.
    """
    text = values.astype("string").str.strip().replace({"": pd.NA})
    text = text.str.replace(r"(\d{4})年(\d{1,2})月(\d{1,2})日?", r"\1-\2-\3", regex=True)
    parsed = pd.to_datetime(text, errors="coerce", format="mixed", yearfirst=True)
    out = parsed.dt.date.astype(object).where(parsed.notna(), None)
    if not open_ended:
        return out
    return out.where(~text.isin(OPEN_ENDED).fillna(False), date.max)


def read_permit_layer(cfg: PermitLayer, index: int = 0) -> Permits:
    """One permit file as normalised permits."""
    notes: list[str] = []
    raw = read_vector(cfg.path, cfg.layer, what="permit layer")
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
    gdf = repair_polygons(raw, cfg.path, notes).to_crs("EPSG:4326")
    out = gpd.GeoDataFrame(geometry=gdf.geometry.values, crs="EPSG:4326")
    out["permit_id"] = gdf[mapping["permit_id"]].astype(str).values
    out["permit_type"] = _permit_types(gdf, cfg, mapping, index)
    out["holder"] = gdf[mapping["holder"]].astype(str).values if mapping.get("holder") else None
    issues = [[] for _ in range(len(gdf))]
    for name in _DATE_FIELDS:
        column = mapping.get(name)
        if column is None:
            out[name] = None
            continue
        parsed = _parse_dates(gdf[column], open_ended=name != "valid_from").values
        out[name] = parsed
        for i, (orig, val) in enumerate(zip(gdf[column].values, parsed, strict=True)):
            blank = pd.isna(orig) or str(orig).strip() == ""
            if val is None and not (blank and name == "reclaim_by"):  # no deadline given is allowed
                issues[i].append(f"{name} missing" if blank else f"{name} unreadable ({orig!r})")
    out["source_file"] = cfg.path.name
    out["issues"] = ["; ".join(i) for i in issues]
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


def load_permits(layers: list[PermitLayer]) -> Permits:
    """All permit layers of a run as one table."""
    if not layers:
        return Permits(_empty(), ["no permit layer configured: every change is a lead"])
    parts = [read_permit_layer(cfg, i) for i, cfg in enumerate(layers)]
    table = gpd.GeoDataFrame(pd.concat([p.table for p in parts], ignore_index=True), crs="EPSG:4326")
    return Permits(table, [n for p in parts for n in p.notes])
