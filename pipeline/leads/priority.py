"""Which lead an investigator should look at first: confidence, area and the sensitivity of the place.

A lead's priority is its confidence score, scaled up to twice by its area (`area_factor`), then
multiplied by 1 + the weights of the reference layers it falls in (nature reserves, 生态保护红线,
永久基本农田: `priority_layers` in the configuration). The run's leads are sorted by it, and the
dossier and the register read them in that order. See docs/confidence.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from pipeline.config import PriorityLayer
from pipeline.detection.vectorize import EQUAL_AREA_CRS
from pipeline.errors import InputError
from pipeline.inputs.placement import CHECK_CRS, NEAR_KM, distance_km, misplaced, off_earth
from pipeline.inputs.vectors import check_text, name_features, read_vector, repair_polygons

#: A lead counts as in a layer when they share at least this much (one 10 m pixel), so that
#: boundaries drawn at another scale do not pull in leads that merely touch them.
MIN_OVERLAP_M2 = 100.0
#: From this share of its area on, a lead is "in" a layer; below it "partly in".
INSIDE_SHARE = 0.5
#: Leads of this area and more all count as large: area can at most double a priority.
AREA_FULL_HA = 10.0


@dataclass
class PriorityLayers:
    """The configured reference layers, each cut to its features near the AOI (equal-area CRS)."""

    layers: list[tuple[PriorityLayer, gpd.GeoDataFrame]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_priority_layers(configs: list[PriorityLayer], aoi_wgs84: BaseGeometry) -> PriorityLayers:
    """Read every reference layer; refuse one that holds no area or none of whose areas comes near
    the AOI (coordinates that do not mean what its CRS says would otherwise raise no lead, silently)."""
    out = PriorityLayers()
    for i, cfg in enumerate(configs):
        where = f"priority_layers[{i}]"
        raw = read_vector(cfg.path, cfg.layer, what="priority layer", encoding=cfg.encoding,
                          encoding_option=f"{where}.encoding")
        check_text(raw, cfg.path, cfg.encoding, f"{where}.encoding", out.notes)
        areas = repair_polygons(raw, cfg.path, out.notes)
        if areas.empty:
            raise InputError(cfg.path, where, f"the layer ({cfg.name}) holds no polygon",
                             "give the areas themselves (polygons), not points or lines")
        out.layers.append((cfg, _near(areas, cfg, aoi_wgs84, out.notes).to_crs(EQUAL_AREA_CRS)))
    return out


def _near(areas: gpd.GeoDataFrame, cfg: PriorityLayer, aoi_wgs84: BaseGeometry, notes: list[str]) -> gpd.GeoDataFrame:
    """The layer's areas that reach the AOI, in WGS84. A region-wide layer may have none there (a
    note says so); one with none within NEAR_KM is placed wrong, or meant for another region."""
    wgs84 = areas.to_crs("EPSG:4326")
    off = off_earth(wgs84.geometry)
    on_earth = wgs84[~off]
    hits = np.sort(on_earth.sindex.query(aoi_wgs84, predicate="intersects")) if len(on_earth) else np.zeros(0, int)
    if not len(hits):
        km = distance_km(wgs84.geometry, aoi_wgs84)
        if (km > NEAR_KM).all():
            nearest = f"the nearest is {km.min():.0f} km away" if np.isfinite(km.min()) else "all land off Earth"
            raise misplaced(cfg.path, f"none of the layer's {len(wgs84)} areas ({cfg.name}) lies within "
                            f"{NEAR_KM:.0f} km of the AOI once reprojected from {areas.crs.name} ({nearest})",
                            areas.geometry, aoi_wgs84,
                            f"{CHECK_CRS}; remove the layer from the configuration if it is for another region")
        notes.append(f"{cfg.path.name}: no area of {cfg.name} reaches the AOI; it raises no lead's priority")
    if off.any():
        notes.append(f"{cfg.path.name}: dropped {int(off.sum())} area(s) with impossible coordinates once "
                     f"reprojected from {areas.crs.name} ({name_features(wgs84, off)}); they raise no priority")
    return on_earth.iloc[hits]


def layer_shares(leads: gpd.GeoDataFrame, areas: gpd.GeoDataFrame) -> np.ndarray:
    """Share of each lead's area (equal-area CRS, both) that the layer's areas cover, counted only
    where the overlap reaches MIN_OVERLAP_M2; 0 elsewhere."""
    share = np.zeros(len(leads))
    if not len(leads) or not len(areas):
        return share
    lead, area = areas.sindex.query(leads.geometry.to_numpy(), predicate="intersects")
    if not len(lead):
        return share
    parts = pd.Series(shapely.intersection(leads.geometry.to_numpy()[lead], areas.geometry.to_numpy()[area]))
    covered = parts.groupby(lead).agg(lambda g: shapely.union_all(g.to_numpy()))  # areas that overlap count once
    overlap = shapely.area(covered.to_numpy())
    whole = shapely.area(leads.geometry.to_numpy()[covered.index])
    share[covered.index] = np.where(overlap >= MIN_OVERLAP_M2, np.minimum(overlap / whole, 1.0), 0.0)
    return share


def area_factor(area_ha: np.ndarray) -> np.ndarray:
    """1 for the smallest lead up to 2 at AREA_FULL_HA and beyond, on a log scale: ten hectares
    matter more than one, but not ten times more than a field trip to a small site."""
    return 1.0 + np.minimum(np.log1p(np.asarray(area_ha, dtype=float)) / np.log1p(AREA_FULL_HA), 1.0)


def prioritise(leads: gpd.GeoDataFrame, reference: PriorityLayers) -> gpd.GeoDataFrame:
    """The leads (equal-area CRS, confidence assessed) with priority, rank and reasons, highest first;
    ties go to the larger lead, then the lead id, so the order is the same in every run."""
    score = leads.confidence_score.to_numpy(dtype=float)
    if np.isnan(score).any():
        raise ValueError("prioritise needs the leads' confidence (pipeline.leads.confidence.assess_confidence)")
    weight, places = np.zeros(len(leads)), [[] for _ in range(len(leads))]
    for cfg, areas in reference.layers:
        share = layer_shares(leads, areas)
        weight += np.where(share > 0, cfg.weight, 0.0)
        for i in np.flatnonzero(share):
            places[i].append(f"{cfg.name}内" if share[i] >= INSIDE_SHARE else f"部分在{cfg.name}内 ({share[i]:.0%})")
    area_ha = leads.area_ha.to_numpy(dtype=float)
    priority = score * area_factor(area_ha) * (1.0 + weight)
    reasons = np.array(["; ".join([*where, f"面积 {ha:.1f} ha", f"{level}置信度"])
                        for where, ha, level in zip(places, area_ha, leads.confidence, strict=True)], dtype=object)
    ranked = leads.assign(priority=priority.round(3), priority_reasons=reasons)
    ranked = ranked.sort_values(["priority", "area_m2", "lead_id"], ascending=[False, False, True], kind="stable")
    return ranked.assign(priority_rank=np.arange(1, len(ranked) + 1, dtype="int64")).reset_index(drop=True)
