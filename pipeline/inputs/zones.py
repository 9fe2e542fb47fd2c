"""Context zones from the user's files, rasterised on each cell's grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry import box

from detectors.categories import OTHER_ID, Zone, get_category
from pipeline.config import ZoneLayer
from pipeline.errors import InputError
from pipeline.inputs.vectors import read_vector, repair_polygons
from pipeline.paths import AOI_DIR
from pipeline.sources.scene import ReadGrid


@dataclass
class Zones:
    """Zone polygons in WGS84 by zone, and notes on what was repaired or missing."""

    polygons: dict[Zone, gpd.GeoSeries] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    switched_off: set[str] = field(default_factory=set)  # categories that need a zone nobody supplied
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


def load_zones(layers: list[ZoneLayer], categories: list[str]) -> Zones:
    """Read every zone layer, then the shipped ones for zones nobody supplied; note what was used.

    A place-bound zone (the Hulun Lake protection zone) falls back to the project's own file.
    Without its zone, a category whose earlier image shows the zone (forest, wetland) runs
    wherever its rule's conditions on that image hold; one that only a map can place (river,
    black soil, grassland) is switched off rather than allowed to read every change in the
    region as its own. The run table says which.
    """
    zones = Zones()
    for cfg in layers:
        _add_layer(zones, cfg)
    needed = {get_category(c).zone for c in categories}
    for zone, path in SHIPPED_ZONES.items():
        if zone in needed and zone not in zones.polygons:
            zones.notes.append(f"'{zone.value}' zone: none supplied, using the approximate {path.name} shipped in aoi/")
            _add_layer(zones, ZoneLayer(path=path, zone=zone))
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


def _add_layer(zones: Zones, cfg: ZoneLayer) -> None:
    """Read one zone layer and add its polygons, by zone."""
    gdf = repair_polygons(read_vector(cfg.path, cfg.layer, what="zone layer"), cfg.path, zones.notes)
    if cfg.zone is not None:
        labels = [cfg.zone] * len(gdf)
    else:
        if cfg.column not in gdf.columns:
            raise InputError(cfg.path, f"zones.column ({cfg.column})", "column not found in the layer "
                             f"(it has: {', '.join(c for c in gdf.columns if c != 'geometry')})",
                             "set zones[].column to the column that names each feature's zone")
        labels = [_zone_value(v, cfg) for v in gdf[cfg.column]]
    gdf = gdf.to_crs("EPSG:4326")
    for zone in set(labels):
        merged = shapely.union_all(gdf.geometry[[lab == zone for lab in labels]].values)
        prev = zones.polygons.get(zone)
        zones.polygons[zone] = gpd.GeoSeries([merged] if prev is None else [*prev, merged], crs="EPSG:4326")


def _zone_value(value: object, cfg: ZoneLayer) -> Zone:
    text = str(value)
    if text in cfg.values:
        return cfg.values[text]
    try:
        return Zone(text)
    except ValueError:
        raise InputError(cfg.path, f"zones.column ({cfg.column})", f"value {text!r} is not a zone",
                         f"map it in zones[].values to one of: {', '.join(z.value for z in Zone)}") from None
