"""Write a simulated scene to disk in the formats users actually hold.

Imagery goes to L2A-like GeoTIFFs (uint16 with the L2A scale and −1000 offset, plus SCL) or L1C-like ones, the
permit layer to a GeoPackage in CGCS2000 with Chinese column names and values, the context
zones and the ground truth to GeoPackages. Deterministic for a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from detectors.bands import L2A_OFFSET, L2A_QUANTIFICATION, REFLECTANCE_BANDS, SCL_BAND
from detectors.categories import PERMIT_TYPES_ZH, Zone
from pipeline.atomic import atomic_path, write_json_atomic
from pipeline.simulator.landscape import SimulationGrid, make_landscape
from pipeline.simulator.plan import Timeline, plan_changes
from pipeline.simulator.render import RenderedAcquisition, acquire, ground_reflectance, top_of_atmosphere
from pipeline.simulator.settings import SceneSettings

#: Chinese column names and type values of the simulated permit register, as a county
#: natural-resources bureau might export them; the demo configuration maps them back.
PERMIT_COLUMNS_ZH = {"permit_id": "许可证号", "permit_type": "许可类型", "holder": "持有人",
                     "valid_from": "批准日期", "valid_to": "有效期至", "reclaim_by": "复垦期限"}


@dataclass
class SimulatedScene:
    """Paths of everything one simulation wrote."""

    folder: Path
    imagery: list[Path]
    permits: Path
    zones: Path
    truth: Path
    timeline: Timeline


def _grid_for(aoi_utm: BaseGeometry, crs: str, margin_m: float = 600.0, res: float = 10.0) -> SimulationGrid:
    minx, miny, maxx, maxy = aoi_utm.bounds
    x0 = math.floor((minx - margin_m) / res) * res
    y1 = math.ceil((maxy + margin_m) / res) * res
    width = math.ceil((maxx + margin_m - x0) / res)
    height = math.ceil((y1 - (miny - margin_m)) / res)
    return SimulationGrid(crs=crs, transform=Affine(res, 0, x0, 0, -res, y1), height=height, width=width)


def write_acquisition(path: Path, acq: RenderedAcquisition, grid: SimulationGrid) -> None:
    """A Sentinel-2-like GeoTIFF: six reflectance bands as uint16 DN with the −1000 offset of
    processing baseline 04.00, then SCL for Level-2A; Level-1C (no SCL) is tagged as such."""
    level = "L2A" if acq.scl is not None else "L1C"
    dn = np.clip(np.round(acq.reflectance * L2A_QUANTIFICATION - L2A_OFFSET), 1, 65535).astype("uint16")
    names = (*REFLECTANCE_BANDS, SCL_BAND) if acq.scl is not None else REFLECTANCE_BANDS
    profile = dict(driver="GTiff", height=grid.height, width=grid.width, count=len(names),
                   dtype="uint16", crs=grid.crs, transform=grid.transform, nodata=0, tiled=True,
                   blockxsize=256, blockysize=256, compress="deflate", predictor=2)
    offset_tag = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(dn, indexes=list(range(1, len(REFLECTANCE_BANDS) + 1)))
        if acq.scl is not None:
            dst.write(acq.scl.astype("uint16"), len(names))
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
        dst.update_tags(ACQUISITION_DATE=acq.date.isoformat(), PROCESSING_LEVEL=level,
                        **{offset_tag: str(int(L2A_OFFSET))}, QUANTIFICATION_VALUE=str(int(L2A_QUANTIFICATION)),
                        SPACECRAFT="Sentinel-2 (simulated by eoleads)")


def _bowtie(poly: BaseGeometry) -> Polygon:
    """A self-intersecting copy of a polygon's envelope, as digitising errors produce."""
    minx, miny, maxx, maxy = poly.bounds
    return Polygon([(minx, miny), (maxx, maxy), (maxx, miny), (minx, maxy)])


def simulate_scene(folder: Path, aoi_wgs84: BaseGeometry, seed: int, lake_wgs84: BaseGeometry | None = None,
                   lake_zone_wgs84: BaseGeometry | None = None, timeline: Timeline | None = None,
                   settings: SceneSettings | None = None) -> SimulatedScene:
    """Simulate two epochs over an AOI and write imagery, permits, zones and truth to a folder.

    The scene is made in the WGS84 UTM zone of the AOI's centre, as a Sentinel-2 tile would be.
    """
    timeline = timeline or Timeline()
    settings = settings or SceneSettings()
    folder.mkdir(parents=True, exist_ok=True)
    crs = gpd.GeoSeries([aoi_wgs84], crs="EPSG:4326").estimate_utm_crs("WGS 84").to_string()
    to_utm = gpd.GeoSeries([aoi_wgs84, lake_wgs84, lake_zone_wgs84], crs="EPSG:4326").to_crs(crs)
    aoi_utm, lake, lake_zone = (None if g is None or g.is_empty else g for g in to_utm)
    grid = _grid_for(aoi_utm, crs)
    rng = np.random.default_rng(seed)
    near = aoi_utm.buffer(5000)
    lake = lake.intersection(near) if lake is not None else None
    lake_zone = lake_zone.intersection(near) if lake_zone is not None else None
    land = make_landscape(grid, aoi_utm, lake, rng, lake_zone=lake_zone)
    changes, permits, distractors = plan_changes(land, rng, timeline, settings)

    imagery: list[Path] = []
    (folder / "imagery").mkdir(exist_ok=True)
    bar = tqdm(total=len(timeline.before) + len(timeline.after), desc="simulating scene", unit="image",
               disable=None)  # shown on a terminal only
    for epoch, dates in (("before", timeline.before), ("after", timeline.after)):
        ground = ground_reflectance(land, changes, distractors, epoch, rng, settings.phenology)
        for when in dates:
            m = settings.misregistration_px
            shift = (0.0, 0.0) if epoch == "before" else tuple(rng.uniform(-m, m, 2))
            acq = acquire(ground, when, rng, cloud_cover=float(rng.uniform(*settings.cloud_cover)), shift_px=shift)
            if settings.radiometry == "L1C":
                acq = top_of_atmosphere(acq, rng)
            path = folder / "imagery" / f"S2_{settings.radiometry}_{when:%Y%m%d}.tif"
            write_acquisition(path, acq, grid)
            imagery.append(path)
            bar.update()
    bar.close()

    truth = folder / "truth.gpkg"
    _write_layer(gpd.GeoDataFrame(
        {"change_id": [c.change_id for c in changes], "category": [c.category for c in changes],
         "surface": [c.surface for c in changes], "scenario": [c.scenario for c in changes],
         "expected_lead": [c.expected_lead for c in changes],
         "expected_reason": [c.expected_reason or "" for c in changes]},
        geometry=[c.geometry for c in changes], crs=crs), truth, "changes")
    _write_layer(gpd.GeoDataFrame({"kind": [d.kind for d in distractors]},
                                  geometry=[d.geometry for d in distractors], crs=crs),
                 truth, "distractors", append=True)

    zones = folder / "zones.gpkg"
    own = {z: g for z, g in land.zones.items() if z is not Zone.LAKE}  # the lake zone is aoi/'s own file
    _write_layer(gpd.GeoDataFrame({"zone": [z.value for z in own]}, geometry=list(own.values()), crs=crs),
                 zones, "zones")

    permit_path = folder / "permits.gpkg"
    cols = PERMIT_COLUMNS_ZH
    geoms = [p.geometry for p in permits]
    geoms[-1] = _bowtie(geoms[-1])  # a broken geometry, as real registers have
    _write_layer(gpd.GeoDataFrame(
        {cols["permit_id"]: [p.permit_id for p in permits],
         cols["permit_type"]: [PERMIT_TYPES_ZH[p.permit_type] for p in permits],
         cols["holder"]: [p.holder for p in permits],
         cols["valid_from"]: [_iso(p.valid_from) for p in permits],
         cols["valid_to"]: [_iso(p.valid_to) for p in permits],
         cols["reclaim_by"]: [_iso(p.reclaim_by) for p in permits]},
        geometry=geoms, crs=crs).to_crs("EPSG:4490"), permit_path, "permits")

    done = folder / "simulation.json"  # written last and atomically: it marks a finished folder
    write_json_atomic(done, {
        "seed": seed, "crs": crs, "shape": [grid.height, grid.width],
        "before": [d.isoformat() for d in timeline.before], "after": [d.isoformat() for d in timeline.after],
        "changes": len(changes), "categories": sorted({c.category for c in changes}),
        "permits": len(permits), "distractors": [d.kind for d in distractors],
        "aoi": aoi_wgs84.wkt, "settings": settings.to_dict(),
    })
    return SimulatedScene(folder, imagery, permit_path, zones, truth, timeline)


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


def _write_layer(gdf: gpd.GeoDataFrame, path: Path, layer: str, append: bool = False) -> None:
    if not append and path.exists():
        path.unlink()
    gdf.to_file(path, layer=layer, driver="GPKG", engine="pyogrio", append=append)
