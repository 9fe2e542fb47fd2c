"""Context zones from the user's files, rasterised on each cell's grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely import STRtree
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from detectors.categories import OTHER_ID, Zone, get_category
from pipeline.config import ZoneLayer
from pipeline.errors import InputError
from pipeline.inputs.land_survey import LAND_CLASSES, is_land_class, normalise_codes, zone_of
from pipeline.inputs.placement import CHECK_CRS, NEAR_KM, distance_km, misplaced, off_earth
from pipeline.inputs.vectors import check_text, name_features, read_vector, repair_polygons
from pipeline.paths import AOI_DIR
from pipeline.sources.scene import ReadGrid


@dataclass
class Zones:
    """Zone polygons in WGS84 by zone, and notes on what was repaired or missing."""

    polygons: dict[Zone, gpd.GeoSeries] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    switched_off: set[str] = field(default_factory=set)  # categories that need a zone nobody supplied
    land_classes: gpd.GeoDataFrame | None = None  # land-survey parcels (dlbm, dlmc; WGS84), None without a survey
    _index: dict = field(default_factory=dict, repr=False)  # (zone, crs) -> spatial index of its parts

    def masks(self, grid: ReadGrid) -> dict[Zone, np.ndarray]:
        """A boolean raster per supplied zone on the given grid (pixel centres inside).

        Zone layers are reprojected once per CRS and indexed, so each cell rasterises only the
        parts of a region-wide layer that reach it.
        """
        cell = box(*grid.bounds)
        out = {}
        for zone in self.polygons:
            tree, parts = self._indexed(zone, grid.crs)
            out[zone] = grid.mask([parts[i] for i in tree.query(cell, predicate="intersects")])
        return out

    def _indexed(self, zone: Zone, crs: str) -> tuple[STRtree, np.ndarray]:
        key = (zone, crs)
        if key not in self._index:
            parts = self.polygons[zone].to_crs(crs).explode(index_parts=False)
            parts = parts[~parts.is_empty & parts.notna()].to_numpy()
            self._index[key] = (STRtree(parts), parts)
        return self._index[key]


#: Zones the project ships, used when the configuration supplies none of that kind.
SHIPPED_ZONES = {Zone.LAKE: AOI_DIR / "hulun_lake_protection_zone.geojson"}


def load_zones(layers: list[ZoneLayer], categories: list[str], aoi_wgs84: BaseGeometry | None = None) -> Zones:
    """Read every zone layer, then the shipped ones for zones nobody supplied; note what was used.

    A place-bound zone (the Hulun Lake protection zone) falls back to the project's own file,
    also where a land survey gives only the lake's water surface, without its shore.
    Without its zone, a category whose earlier image shows the zone (forest, wetland) runs
    wherever its rule's conditions on that image hold; one that only a map can place (river,
    black soil, grassland) is switched off rather than allowed to read every change in the
    region as its own. The run table says which. With `aoi_wgs84`, a configured layer none of
    whose features comes near the AOI is refused (see `_placed`).
    """
    zones = Zones()
    by_boundary: set[Zone] = set()  # zones drawn as such, not read from land-class codes
    for i, cfg in enumerate(layers):
        added = _add_layer(zones, cfg, f"zones[{i}]", aoi_wgs84)
        by_boundary |= set() if cfg.land_survey else added
    needed = {get_category(c).zone for c in categories}
    for zone, path in SHIPPED_ZONES.items():
        if zone in needed and zone not in by_boundary:
            how = ("the land survey gives water surfaces without their shore, adding" if zone in zones.polygons
                   else "none supplied, using")
            zones.notes.append(f"'{zone.value}' zone: {how} the approximate {path.name} shipped in aoi/")
            _add_layer(zones, ZoneLayer(path=path, zone=zone), "zones", None)
    if "mine" in categories and Zone.MINING_DISTRICT not in zones.polygons:
        zones.notes.append("no 'mining_district' zone supplied: dark (coal-like) surfaces count as mining "
                           "everywhere, and burn scars may be read as mines")
    for cat in categories:
        zone = get_category(cat).zone
        if zone is Zone.EVERYWHERE or zone in zones.polygons:
            continue
        if get_category(cat).needs_zone_layer:
            zones.switched_off.add(cat)
            fallback = ("its changes are reported as 'other'" if OTHER_ID in categories
                        else "and 'other' is off, so its changes are not reported")
            zones.notes.append(f"no '{zone.value}' zone supplied: category '{cat}' was not run, {fallback} "
                               "(add a zone layer for it, see docs/configuration.md)")
        else:
            zones.notes.append(f"no '{zone.value}' zone supplied: category '{cat}' applies wherever its rule's "
                               "conditions on the earlier image hold")
    return zones


def _add_layer(zones: Zones, cfg: ZoneLayer, where: str, near: BaseGeometry | None) -> set[Zone]:
    """Read one zone layer (`where` names it in the configuration) and add its polygons by zone."""
    encoding_option = f"{where}.encoding"
    raw = read_vector(cfg.path, cfg.layer, what="zone layer", encoding=cfg.encoding, encoding_option=encoding_option)
    check_text(raw, cfg.path, cfg.encoding, encoding_option, zones.notes)
    gdf = _placed(repair_polygons(raw, cfg.path, zones.notes), cfg.path, near, zones.notes)
    if cfg.land_survey:
        labels = _survey_zones(zones, gdf, cfg, where)
    elif cfg.zone is not None:
        labels = pd.Series(cfg.zone, index=gdf.index, dtype=object)
    else:
        column = _column(gdf, cfg.column, cfg, f"{where}.column", "names each feature's zone")
        labels = gdf[column].map(lambda v: _zone_value(v, cfg, f"{where}.column ({column})"))
    added = set(labels.dropna())
    for zone in added:
        parts = gdf.geometry[(labels == zone).to_numpy()]
        prev = zones.polygons.get(zone)
        zones.polygons[zone] = parts if prev is None else gpd.GeoSeries(pd.concat([prev, parts]), crs="EPSG:4326")
    return added


def _placed(gdf: gpd.GeoDataFrame, path: Path, near: BaseGeometry | None, notes: list[str]) -> gpd.GeoDataFrame:
    """The layer in WGS84 without features of impossible coordinates; refused when it cannot be right.

    A zone layer may cover more than the AOI (a league's land survey), so distant features are
    kept. But coordinates that do not mean what the layer's CRS says land far away or nowhere
    without any error, and the zone would then hold no place at all: its categories would find
    nothing. So a layer none of whose features comes within NEAR_KM of the AOI (or, without an
    AOI, most of whose features land off Earth) is refused, with the likely mistake.
    """
    wgs84 = gdf.to_crs("EPSG:4326")
    if wgs84.empty:
        return wgs84
    off = off_earth(wgs84.geometry)
    if near is not None:
        km = distance_km(wgs84.geometry, near)
        if (km > NEAR_KM).all():
            nearest = f"the nearest is {km.min():.0f} km away" if np.isfinite(km.min()) else "all land off Earth"
            raise misplaced(path, f"none of the layer's {len(wgs84)} zone features lies within {NEAR_KM:.0f} km of "
                            f"the AOI once reprojected from {gdf.crs.name} ({nearest})", gdf.geometry, near,
                            f"{CHECK_CRS}; remove the layer from the configuration if it is for another region")
    elif 2 * off.sum() > len(wgs84):
        raise misplaced(path, f"{int(off.sum())} of the layer's {len(wgs84)} zone features have impossible "
                        f"coordinates once reprojected from {gdf.crs.name}", gdf.geometry[off])
    if off.any():
        notes.append(f"{path.name}: dropped {int(off.sum())} zone feature(s) with impossible coordinates once "
                     f"reprojected from {gdf.crs.name} ({name_features(wgs84, off)}); they give no zone")
    return wgs84[~off]


def _survey_zones(zones: Zones, gdf: gpd.GeoDataFrame, cfg: ZoneLayer, where: str) -> pd.Series:
    """The zone of each land-survey parcel by its code (None: it gives none, counted in a note), and
    the parcels kept with their land class for the leads."""
    column = _column(gdf, cfg.code_column, cfg, f"{where}.code_column", "holds the land-class codes (地类编码)")
    if gdf.empty:
        raise InputError(cfg.path, "geometry", "the land survey layer holds no parcel with an area",
                         "give the land survey's parcels (地类图斑) as polygons")
    codes = normalise_codes(gdf[column])
    if not any(is_land_class(c) for c in codes.unique()):
        examples = ", ".join(repr(c) for c in codes.unique()[:5])
        raise InputError(cfg.path, f"{where}.code_column", f"column {column!r} holds no land-class code ({examples})",
                         f"set {where}.code_column to the column of land-class codes like 0301 (DLBM in the survey)")
    names = codes.map(LAND_CLASSES)
    if "name_column" in cfg.model_fields_set or _column(gdf, cfg.name_column) is not None:
        given = gdf[_column(gdf, cfg.name_column, cfg, f"{where}.name_column", "holds the land-class names (地类名称)")]
        given = given.astype("string").str.strip()
        names = given.where(given.fillna("") != "", names).astype(object)  # blank names from the table
    by_code = {code: zone_of(code, cfg.codes) for code in codes.unique()}
    labels = codes.map(by_code)
    counts = labels.value_counts()
    read = ", ".join(f"{zone.value} {n} parcel(s)" for zone, n in counts.items())
    zones.notes.append(f"{cfg.path.name}: land survey read by its {column} codes: {read or 'no zone'}")
    if Zone.BLACK_SOIL in counts and not any(code.startswith("01") for code in cfg.codes):
        zones.notes.append(f"{cfg.path.name}: cropland (01 耕地) is read as black-soil cropland; where it is not, "
                           f"set {where}.codes: {{\"01\": null}}")
    none = codes[labels.isna()]
    if len(none):
        first = names.groupby(codes).first()
        listed = ", ".join(f"{code or '(blank)'} {first.get(code) or 'not a land-class code'} {n}"
                           for code, n in none.value_counts().items())
        zones.notes.append(f"{cfg.path.name}: {len(none)} parcel(s) give no zone and are ignored, by code: {listed}")
    parcels = gpd.GeoDataFrame({"dlbm": codes.to_numpy(), "dlmc": names.to_numpy()}, geometry=gdf.geometry.to_numpy(),
                               crs="EPSG:4326")
    zones.land_classes = parcels if zones.land_classes is None else gpd.GeoDataFrame(
        pd.concat([zones.land_classes, parcels], ignore_index=True), crs="EPSG:4326")
    return labels


def _column(gdf: gpd.GeoDataFrame, name: str, cfg: ZoneLayer | None = None, field: str = "", holds: str = ""
            ) -> str | None:
    """The layer's column of that name, in any case (dlbm for DLBM); without `cfg`, None where it has
    none, else an error naming the configuration `field` and what the column `holds`."""
    have = [c for c in gdf.columns if c != gdf.geometry.name]
    found = name if name in have else next((c for c in have if str(c).upper() == name.upper()), None)
    if found is None and cfg is not None:
        raise InputError(cfg.path, f"{field} ({name})", f"column not found in the layer (it has: {', '.join(have)})",
                         f"set {field} to the column that {holds}")
    return found


def _zone_value(value: object, cfg: ZoneLayer, field: str) -> Zone:
    text = str(value)
    if text in cfg.values:
        return cfg.values[text]
    try:
        return Zone(text)
    except ValueError:
        raise InputError(cfg.path, field, f"value {text!r} is not a zone",
                         f"map it in zones[].values to one of: {', '.join(z.value for z in Zone)}") from None
