"""Evidence an investigator can look at: before/after images of each lead and an overview map.

The images come from the same source and windows the detector saw, composited the same way,
so what the picture shows is what the lead was drawn from.
"""

from __future__ import annotations

import math
import os
import shutil
from functools import lru_cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from affine import Affine
from matplotlib import font_manager
from matplotlib.figure import Figure
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from detectors.bands import band_index
from detectors.categories import CATEGORIES, get_category
from pipeline.atomic import atomic_path
from pipeline.config import Windows
from pipeline.inputs.grid import utm_epsg
from pipeline.sources import ImagerySource
from pipeline.sources.scene import Composite, ReadGrid

_CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
                 "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC")


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """A font that has Chinese glyphs, if the machine has one; without it Chinese text is left out."""
    for family in _CJK_FAMILIES:
        try:
            font_manager.findfont(family, fallback_to_default=False)
            return family
        except ValueError:
            continue
    return None


def _zh(text: str) -> str:
    return text if cjk_font() else ""


def _fonts() -> list[str]:
    return [f for f in (cjk_font(), "DejaVu Sans") if f]


CHIP_MIN_M = 800.0  # the smallest side of an evidence image, so a lead is seen in its setting
COLOURS = {c.id: tuple(v / 255 for v in c.colour) for c in CATEGORIES}  # matplotlib's 0..1, as in QGIS


def _true_colour(comp: Composite, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    rgb = comp.reflectance[[band_index("B04"), band_index("B03"), band_index("B02")]]
    img = np.clip((np.moveaxis(rgb, 0, -1) - lo) / (hi - lo), 0, 1)
    return np.where(np.isnan(img), 0.0, img)


def chip_grid(lead_wgs84: BaseGeometry, resolution: float = 10.0) -> tuple[ReadGrid, str]:
    """A square grid around a lead in the UTM zone of its centre, at least CHIP_MIN_M wide."""
    centre = lead_wgs84.representative_point()
    crs = f"EPSG:{utm_epsg(centre.x, centre.y)}"
    geom = gpd.GeoSeries([lead_wgs84], crs="EPSG:4326").to_crs(crs).iloc[0]
    minx, miny, maxx, maxy = geom.bounds
    side = max(CHIP_MIN_M, 1.6 * max(maxx - minx, maxy - miny))
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    n = math.ceil(side / resolution)
    x0 = math.floor((cx - side / 2) / resolution) * resolution
    y1 = math.ceil((cy + side / 2) / resolution) * resolution
    return ReadGrid(crs, Affine(resolution, 0, x0, 0, -resolution, y1), n, n), crs


def lead_chip(lead: pd.Series, lead_wgs84: BaseGeometry, source: ImagerySource, windows: Windows,
              path: Path, resolution: float = 10.0) -> bool:
    """Write the before/after image of one lead; False when the source has no imagery there."""
    grid, crs = chip_grid(lead_wgs84, resolution)
    before, after = source.composite(grid, windows.baseline), source.composite(grid, windows.monitoring)
    if before is None or after is None:
        return False
    both = np.concatenate([before.reflectance[:3].ravel(), after.reflectance[:3].ravel()])
    lo, hi = np.nanpercentile(both, 2), np.nanpercentile(both, 98)
    outline = gpd.GeoSeries([lead_wgs84], crs="EPSG:4326").to_crs(crs)
    minx, miny, maxx, maxy = grid.bounds
    extent = (minx, maxx, miny, maxy)
    cat = get_category(lead.category)
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, comp, label in ((axes[0], before, "before"), (axes[1], after, "after")):
        ax.imshow(_true_colour(comp, lo, hi), extent=extent)
        outline.boundary.plot(ax=ax, color="yellow", linewidth=1.2)
        ax.set_title(f"{label}: {', '.join(d.isoformat() for d in comp.dates)}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{lead.lead_id}  {cat.name_en} {_zh(cat.name_zh)}  ({lead.reason}, {lead.area_ha:.2f} ha, "
                 f"{lead.area_mu:.1f} mu)\nlead {_zh('(线索) ')}to be verified in the field; true colour, {crs}",
                 fontsize=9, family=_fonts())
    fig.savefig(path, dpi=90)
    return True


def write_evidence(leads: gpd.GeoDataFrame, source: ImagerySource, windows: Windows, folder: Path,
                   resolution: float = 10.0, progress: bool = True) -> list[str]:
    """One PNG per lead in `folder`/evidence; returns each lead's path relative to `folder`.

    The images are drawn into a folder of this process's own and swapped in whole, so images of
    leads an earlier run had never mix with this run's, and two jobs finishing at once do not
    trip over each other.
    """
    fresh = folder / f".evidence.{os.getpid()}.partial"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    wgs = leads.to_crs("EPSG:4326").geometry
    paths = []
    for (_, lead), geom in tqdm(zip(leads.iterrows(), wgs, strict=True), total=len(leads), desc="evidence",
                                unit="lead", disable=not progress):
        drawn = lead_chip(lead, geom, source, windows, fresh / f"{lead.lead_id}.png", resolution)
        paths.append(f"evidence/{lead.lead_id}.png" if drawn else "")
    final, old = folder / "evidence", folder / f".evidence.{os.getpid()}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.replace(old)
    fresh.replace(final)
    shutil.rmtree(old, ignore_errors=True)
    return paths


def overview_map(leads: gpd.GeoDataFrame, aoi: gpd.GeoDataFrame, path: Path) -> None:
    """All leads over the AOI, coloured by category and labelled with their ids, in metres."""
    centre = aoi.to_crs("EPSG:4326").union_all().representative_point()
    crs = f"EPSG:{utm_epsg(centre.x, centre.y)}"
    fig = Figure(figsize=(9, 8), layout="constrained")
    ax = fig.subplots()
    aoi.to_crs(crs).boundary.plot(ax=ax, color="black", linewidth=0.8)
    shown = leads.to_crs(crs) if len(leads) else leads
    for cat in CATEGORIES:
        sub = shown[shown.category == cat.id] if len(shown) else shown
        if len(sub):
            sub.plot(ax=ax, color=COLOURS[cat.id], edgecolor=COLOURS[cat.id], linewidth=2)
            ax.scatter(sub.representative_point().x, sub.representative_point().y, s=40, marker="o",
                       facecolors="none", edgecolors=COLOURS[cat.id], label=f"{cat.name_en} ({len(sub)})")
            for _, row in sub.iterrows():
                p = row.geometry.representative_point()
                ax.annotate(row.lead_id, (p.x, p.y), fontsize=6, xytext=(4, 4), textcoords="offset points")
    ax.set_title(f"{len(leads)} leads {_zh('(线索) ')}to be verified; {crs}, metres", family=_fonts())
    if len(shown):
        ax.legend(loc="lower left", fontsize=7)
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(labelsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
