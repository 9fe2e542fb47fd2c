"""Context zones from the user's files, rasterised on each cell's grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely
from rasterio import features

from detectors.categories import Zone, get_category
from pipeline.aoi import read_vector, repair_polygons
from pipeline.config import ZoneLayer
from pipeline.errors import InputError
from pipeline.scene import ReadGrid


@dataclass
class Zones:
    """Zone polygons in WGS84 by zone, and notes on what was repaired or missing."""

    polygons: dict[Zone, gpd.GeoSeries] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def masks(self, grid: ReadGrid) -> dict[Zone, np.ndarray]:
        """A boolean raster per supplied zone on the given grid (pixel centres inside)."""
        out = {}
        for zone, geoms in self.polygons.items():
            shapes = [(g, 1) for g in geoms.to_crs(grid.crs) if g is not None and not g.is_empty]
            out[zone] = features.rasterize(shapes, out_shape=(grid.height, grid.width), transform=grid.transform,
                                           fill=0, dtype="uint8").astype(bool) if shapes else \
                np.zeros((grid.height, grid.width), dtype=bool)
        return out


def load_zones(layers: list[ZoneLayer], categories: list[str]) -> Zones:
    """Read every zone layer; note each category whose zone nobody supplied (it then applies everywhere)."""
    zones = Zones()
    for cfg in layers:
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
            part = gdf.geometry[[lab == zone for lab in labels]]
            merged = shapely.union_all(part.values)
            prev = zones.polygons.get(zone)
            geoms = [merged] if prev is None else [*prev, merged]
            zones.polygons[zone] = gpd.GeoSeries(geoms, crs="EPSG:4326")
    for cat in categories:
        zone = get_category(cat).zone
        if zone is not Zone.EVERYWHERE and zone not in zones.polygons:
            zones.notes.append(f"no '{zone.value}' zone supplied: category '{cat}' applies everywhere")
    return zones


def _zone_value(value: object, cfg: ZoneLayer) -> Zone:
    text = str(value)
    if text in cfg.values:
        return cfg.values[text]
    try:
        return Zone(text)
    except ValueError:
        raise InputError(cfg.path, f"zones.column ({cfg.column})", f"value {text!r} is not a zone",
                         f"map it in zones[].values to one of: {', '.join(z.value for z in Zone)}") from None
