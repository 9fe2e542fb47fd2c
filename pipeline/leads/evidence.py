"""Evidence an investigator can look at: before/after images of each lead and an overview map.

The images come from the same source and windows the detector saw, composited the same way,
so what the picture shows is what the lead was drawn from.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
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
from pipeline.sources.local import DamagedFileError
from pipeline.sources.scene import Composite, ReadGrid

log = logging.getLogger(__name__)
_CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
                 "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC")


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """A font that has Chinese glyphs: the Noto Sans CJK that eoleads installs (the `noto-cjk-sans-otc`
    package, registered with matplotlib here), else one the machine has. None, with a warning, when
    there is none: Chinese text is then left out rather than drawn as boxes."""
    try:
        from noto_cjk_sans_otc import FONT_PATH

        font_manager.fontManager.addfont(str(FONT_PATH))
    except (ImportError, OSError, RuntimeError) as exc:
        log.info("the packaged CJK font is not usable (%s); looking for one on the machine", exc)
    for family in _CJK_FAMILIES:
        try:
            font_manager.findfont(family, fallback_to_default=False)
            return family
        except ValueError:
            continue
    log.warning("no font with Chinese glyphs: Chinese text is left out of images and the PDF dossier is not "
                "drawn; reinstall eoleads (it installs noto-cjk-sans-otc) or install Debian's fonts-noto-cjk")
    return None


def _zh(text: str) -> str:
    return text if cjk_font() else ""


def font_families() -> list[str]:
    """matplotlib's `font.family` for text that mixes Chinese and Latin."""
    return [f for f in (cjk_font(), "DejaVu Sans") if f]


CHIP_MIN_M = 800.0  # the smallest side of an evidence image, so a lead is seen in its setting
COLOURS = {c.id: tuple(v / 255 for v in c.colour) for c in CATEGORIES}  # matplotlib's 0..1, as in QGIS


TRUE_COLOUR = ("B04", "B03", "B02")
#: SWIR2/NIR/red: bare soil and rock show bright, water dark, vegetation green.
FALSE_COLOUR = ("B12", "B08", "B04")


def rgb_images(composites: list[Composite], bands: tuple[str, str, str], per_band: bool = False) -> list[np.ndarray]:
    """The composites as (rows, cols, 3) images in 0..1 under one 2-98 % stretch for all of them, so
    that they compare; unseen pixels are black. One stretch for the three bands keeps true colour's
    hues; `per_band` stretches each band on its own (false colour, whose bands differ in range)."""
    stack = [np.moveaxis(c.reflectance[[band_index(b) for b in bands]], 0, -1) for c in composites]
    seen = np.concatenate([s.reshape(-1, 3) for s in stack])
    seen = seen[np.isfinite(seen).all(axis=1)]
    axis = 0 if per_band else None
    lo, hi = (np.percentile(seen, 2, axis=axis), np.percentile(seen, 98, axis=axis)) if len(seen) else (0.0, 1.0)
    hi = np.maximum(hi, lo + 1e-6)
    return [np.nan_to_num(np.clip((s - lo) / (hi - lo), 0, 1)) for s in stack]


@dataclass(frozen=True)
class Chip:
    """A lead's before and after composites on one square UTM grid around it."""

    grid: ReadGrid
    crs: str
    before: Composite
    after: Composite


def read_chip(lead_wgs84: BaseGeometry, source: ImagerySource, windows: Windows,
              resolution: float = 10.0) -> Chip | None:
    """The before and after images around a lead; None when the source has no imagery there, or a
    damaged file there (the cells that read it are already reported as failed: the run goes on)."""
    grid, crs = chip_grid(lead_wgs84, resolution)
    try:
        before, after = source.composite(grid, windows.baseline), source.composite(grid, windows.monitoring)
    except DamagedFileError as err:
        log.warning("no picture around a lead at %s: %s", lead_wgs84.representative_point(), err)
        return None
    if before is None or after is None:
        return None
    return Chip(grid, crs, before, after)


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
    chip = read_chip(lead_wgs84, source, windows, resolution)
    if chip is None:
        return False
    crs = chip.crs
    outline = gpd.GeoSeries([lead_wgs84], crs="EPSG:4326").to_crs(crs)
    minx, miny, maxx, maxy = chip.grid.bounds
    extent = (minx, maxx, miny, maxy)
    cat = get_category(lead.category)
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    images = rgb_images([chip.before, chip.after], TRUE_COLOUR)
    for ax, comp, image, label in ((axes[0], chip.before, images[0], "before"),
                                   (axes[1], chip.after, images[1], "after")):
        ax.imshow(image, extent=extent)
        outline.boundary.plot(ax=ax, color="yellow", linewidth=1.2)
        ax.set_title(f"{label}: {', '.join(d.isoformat() for d in comp.dates)}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{lead.lead_id}  {cat.name_en} {_zh(cat.name_zh)}  ({lead.reason}, {lead.area_ha:.2f} ha, "
                 f"{lead.area_mu:.1f} mu)\nlead {_zh('(线索) ')}to be verified in the field; true colour, {crs}",
                 fontsize=9, family=font_families())
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    return True


EVIDENCE_DIR = "evidence"


def evidence_path(lead_id: str) -> str:
    """Where a lead's image goes, relative to the run folder (the leads layer links it so)."""
    return f"{EVIDENCE_DIR}/{lead_id}.png"


def write_evidence(leads: gpd.GeoDataFrame, source: ImagerySource, windows: Windows, folder: Path,
                   resolution: float = 10.0, progress: bool = True) -> list[str]:
    """One PNG per lead in `folder`/evidence; returns each lead's path relative to `folder` ("" when
    the source has no imagery there).

    Each image appears whole or not at all; images of leads an earlier run had are the run
    folder's to remove (it knows which files eoleads wrote), so a user's own files in the
    evidence folder stay.
    """
    if len(leads):
        (folder / EVIDENCE_DIR).mkdir(parents=True, exist_ok=True)
    wgs = leads.to_crs("EPSG:4326").geometry
    paths = []
    for (_, lead), geom in tqdm(zip(leads.iterrows(), wgs, strict=True), total=len(leads), desc="evidence",
                                unit="lead", disable=not progress):
        rel = evidence_path(lead.lead_id)
        drawn = lead_chip(lead, geom, source, windows, folder / rel, resolution)
        paths.append(rel if drawn else "")
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
    ax.set_title(f"{len(leads)} leads {_zh('(线索) ')}to be verified; {crs}, metres", family=font_families())
    if len(shown):
        ax.legend(loc="lower left", fontsize=7)
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(labelsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
