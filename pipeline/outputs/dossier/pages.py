"""The dossier's printed pages (A4, matplotlib): the overview map, the list of leads and one page per
lead with its before/after images in true and false colour.

Outlines differ by dash pattern as well as colour, and every line and label has a white halo,
so a page printed in black and white still tells the lead from the permits around it.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
from affine import Affine
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from detectors.categories import CATEGORIES, get_category
from pipeline.config import Windows
from pipeline.inputs.grid import utm_epsg
from pipeline.leads.evidence import COLOURS, FALSE_COLOUR, TRUE_COLOUR, Chip, rgb_images
from pipeline.outputs.dossier.cartography import (
    CATEGORY_DASHES,
    HALO,
    PERMIT_DASHES,
    geographic_ticks,
    north_arrow,
    outline,
    place_labels,
    scale_bar,
)
from pipeline.outputs.dossier.wording import CONFIDENCE_NOTE, DISCLAIMER, formatted
from pipeline.sources import ImagerySource
from pipeline.sources.local import DamagedFileError
from pipeline.sources.scene import ReadGrid

log = logging.getLogger(__name__)

A4 = (8.27, 11.69)
OVERVIEW_MAX_PX = 900  # the overview's background is read at a resolution that keeps it this wide at most
TABLE_ROWS = 38  # rows of the lead list per printed page
WRAP = 104  # columns per line of a lead page's text (a Chinese character takes two)


@dataclass(frozen=True)
class Background:
    """A true-colour image under the overview map and where it lies (map units)."""

    image: np.ndarray
    extent: tuple[float, float, float, float]


def map_crs(aoi: gpd.GeoDataFrame) -> str:
    """The UTM zone of the AOI's centre: the overview is drawn in metres."""
    centre = aoi.to_crs("EPSG:4326").union_all().representative_point()
    return f"EPSG:{utm_epsg(centre.x, centre.y)}"


def overview_background(aoi: gpd.GeoDataFrame, source: ImagerySource, windows: Windows) -> Background | None:
    """The monitoring window's true colour over the AOI, downsampled; None where the source has none,
    or a damaged file (its cells are already reported as failed: the map is drawn without imagery)."""
    crs = map_crs(aoi)
    minx, miny, maxx, maxy = aoi.to_crs(crs).total_bounds
    res = max(10.0, max(maxx - minx, maxy - miny) / OVERVIEW_MAX_PX)
    width, height = math.ceil((maxx - minx) / res), math.ceil((maxy - miny) / res)
    grid = ReadGrid(crs, Affine(res, 0, minx, 0, -res, maxy), width, height)
    try:
        after = source.composite(grid, windows.monitoring)
    except DamagedFileError as err:
        log.warning("overview map drawn without imagery: %s", err)
        return None
    if after is None or not after.valid.any():
        return None
    return Background(rgb_images([after], TRUE_COLOUR)[0], (minx, minx + width * res, maxy - height * res, maxy))


def _frame(ax: Axes, crs: str) -> None:
    scale_bar(ax)
    north_arrow(ax, crs)
    geographic_ticks(ax, crs)


def overview_figure(leads: gpd.GeoDataFrame, aoi: gpd.GeoDataFrame, background: Background | None,
                    heading: list[str]) -> Figure:
    """A4: the heading lines, then the AOI with every lead outlined and numbered as in the list."""
    crs = map_crs(aoi)
    fig = Figure(figsize=A4)
    fig.text(0.06, 0.965, heading[0], fontsize=15, va="top")
    for i, line in enumerate(heading[1:]):
        fig.text(0.06, 0.935 - i * 0.018, line, fontsize=8.5, va="top")
    ax = fig.add_axes((0.1, 0.12, 0.84, 0.74))
    area = aoi.to_crs(crs)
    if background is not None:
        ax.imshow(background.image, extent=background.extent, interpolation="bilinear")
    outline(ax, area.geometry, "black", (0, (8, 3)), width=1.0)
    shown = leads.to_crs(crs)
    legend = [Line2D([], [], color="black", linestyle=(0, (8, 3)), linewidth=1.0, label="监测范围")]
    for cat in CATEGORIES:
        sub = shown[shown.category == cat.id]
        if len(sub):
            outline(ax, sub.geometry, COLOURS[cat.id], CATEGORY_DASHES[cat.id], width=1.6)
            legend.append(Line2D([], [], color=COLOURS[cat.id], linestyle=CATEGORY_DASHES[cat.id], linewidth=1.6,
                                 label=f"{cat.name_zh}（{len(sub)}）"))
    minx, miny, maxx, maxy = area.total_bounds
    pad = 0.03 * max(maxx - minx, maxy - miny)
    ax.set_xlim(minx - pad, maxx + pad)
    ax.set_ylim(miny - pad, maxy + pad)
    ax.set_aspect("equal")
    ax.set_anchor("N")
    ax.set(xlabel="", ylabel="")
    _frame(ax, crs)
    points = shown.geometry.representative_point()
    place_labels(ax, list(zip(points.x, points.y, strict=True)), [str(i + 1) for i in range(len(shown))])
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(0, -0.06), ncols=4, fontsize=7, frameon=False)
    imagery = "底图为监测期真彩色合成（降采样）" if background is not None else "影像源在监测范围内没有后期影像，无底图"
    fig.text(0.06, 0.02, f"{DISCLAIMER}图中编号即线索列表的序号。{imagery}。", fontsize=7)
    return fig


def table_figures(table: pd.DataFrame, title: str) -> list[Figure]:
    """A4 pages of the lead list, TABLE_ROWS rows each (the header repeated on every page)."""
    text = formatted(table)
    pages = [text.iloc[i:i + TABLE_ROWS] for i in range(0, max(len(text), 1), TABLE_ROWS)]
    widths = np.array([max(display_width(c), *(display_width(v) for v in text[c]), 2) for c in text.columns],
                      dtype=float)
    figures = []
    for n, page in enumerate(pages, start=1):
        fig = Figure(figsize=A4)
        fig.text(0.06, 0.965, f"{title}（第{n}/{len(pages)}页）", fontsize=12, va="top")
        ax = fig.add_axes((0.03, 0.05, 0.94, 0.88))
        ax.axis("off")
        if len(page):
            cells = ax.table(cellText=page.to_numpy(), colLabels=list(text.columns), loc="upper center",
                             colWidths=list(widths / widths.sum()), cellLoc="center")
            cells.auto_set_font_size(False)
            cells.set_fontsize(5.5)
            cells.scale(1, 1.25)
        else:
            ax.text(0.5, 0.9, "本次运行没有线索。", ha="center", fontsize=11)
        fig.text(0.06, 0.02, f"{DISCLAIMER}{CONFIDENCE_NOTE}。", fontsize=7)
        figures.append(fig)
    return figures


def display_width(text: str) -> int:
    """Columns a text takes in print: a Chinese character (or full-width sign) two, others one."""
    return sum(2 if ord(c) >= 0x2E80 else 1 for c in text)


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` columns, broken between Chinese characters or between Latin words and
    numbers, never inside a date or an id."""
    lines, line = [], ""
    for token in re.findall(r"[\u2e80-\uffff]|[^\s\u2e80-\uffff]+|\s+", text):
        if line and display_width(line + token) > width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line += token
    return [*lines, line.rstrip()] if line.strip() else lines


def _dates(comp_dates: list, limit: int = 4) -> str:
    shown = ", ".join(d.isoformat() for d in comp_dates[:limit])
    return shown + (f" 等{len(comp_dates)}景" if len(comp_dates) > limit else "") if comp_dates else "无"


def _chip(ax: Axes, image: np.ndarray, chip: Chip, lead: gpd.GeoSeries, permits: gpd.GeoDataFrame,
          colour: object, title: str) -> None:
    minx, miny, maxx, maxy = chip.grid.bounds
    ax.imshow(image, extent=(minx, maxx, miny, maxy), interpolation="nearest")
    for dashes, (_, permit) in zip(PERMIT_DASHES * len(permits), permits.iterrows(), strict=False):
        outline(ax, gpd.GeoSeries([permit.geometry], crs=permits.crs), "black", dashes, width=1.2)
    outline(ax, lead, colour, "-", width=2.0)
    ax.set_xlim(minx, maxx)
    ax.set_ylim(miny, maxy)
    ax.set(xlabel="", ylabel="")
    ax.set_title(title, fontsize=7.5, pad=3)
    _frame(ax, chip.crs)
    if len(permits):
        window = gpd.GeoSeries.from_xy([minx, maxx], [miny, maxy]).union_all().envelope
        inside = permits.geometry.intersection(window)
        points = inside[~inside.is_empty].representative_point()
        ids = permits.permit_id.astype(str)[~inside.is_empty]
        place_labels(ax, list(zip(points.x, points.y, strict=True)), list(ids), fontsize=5.5)


def lead_figure(number: int, lead: pd.Series, lead_wgs84: gpd.GeoSeries, permits_wgs84: gpd.GeoDataFrame,
                chip: Chip | None, facts: list[tuple[str, str]]) -> Figure:
    """A4: the lead's facts and reason, then its before/after images in true and false colour with the
    lead and the permits it touched outlined (the lead solid, each permit dashed and labelled)."""
    cat = get_category(lead.category)
    fig = Figure(figsize=A4)
    fig.text(0.06, 0.97, f"线索 {number}：{lead.lead_id}", fontsize=14, va="top")
    y = 0.935
    for key, value in facts:
        lines = wrap(value, WRAP) or [""]
        fig.text(0.06, y, key, fontsize=8.5, va="top", color="0.3")
        for line in lines:
            fig.text(0.17, y, line, fontsize=8.5, va="top")
            y -= 0.0165
        y -= 0.003
    if chip is None:
        fig.text(0.5, 0.4, "影像源在此处没有前后两期影像，无法出图。", ha="center", fontsize=11)
    else:
        lead_utm = lead_wgs84.to_crs(chip.crs)
        permits = permits_wgs84.to_crs(chip.crs)
        true = rgb_images([chip.before, chip.after], TRUE_COLOUR)
        false = rgb_images([chip.before, chip.after], FALSE_COLOUR, per_band=True)
        panels = (("前期 真彩色", true[0], chip.before), ("后期 真彩色", true[1], chip.after),
                  ("前期 假彩色（B12/B08/B04）", false[0], chip.before),
                  ("后期 假彩色（B12/B08/B04）", false[1], chip.after))
        top = y - 0.03
        size = min((top - 0.08) / 2 - 0.045, 0.42 * A4[0] / A4[1])
        for i, (label, image, comp) in enumerate(panels):
            row, col = divmod(i, 2)
            rect = (0.08 + col * 0.47, top - size - row * (size + 0.045), 0.42, size)
            _chip(fig.add_axes(rect), image, chip, lead_utm, permits, COLOURS[cat.id],
                  f"{label}：{_dates(comp.dates)}")
    key = [Line2D([], [], color=COLOURS[cat.id], linewidth=2.0, path_effects=HALO, label=f"线索范围（{cat.name_zh}）"),
           *(Line2D([], [], color="black", linestyle=d, linewidth=1.2, path_effects=HALO, label=f"许可 {pid}")
             for d, pid in zip(PERMIT_DASHES * len(permits_wgs84), permits_wgs84.permit_id.astype(str),
                               strict=False))]
    fig.legend(handles=key, loc="lower left", bbox_to_anchor=(0.06, 0.028), ncols=4, fontsize=7, frameon=False)
    fig.text(0.06, 0.015, f"{DISCLAIMER}假彩色中裸土、岩石偏亮，水体发暗，植被呈绿色。坐标为 CGCS2000 经纬度。",
             fontsize=7)
    return fig
