"""Map furniture for printed pages: outlines that read in black and white, a scale bar, a north
arrow, geographic coordinates on the frame and labels that keep clear of each other.

Every map here is drawn in metres (a UTM zone); the coordinates written on the frame are
CGCS2000 longitudes and latitudes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import geopandas as gpd
import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox
from pyproj import Transformer

from detectors.categories import CATEGORY_IDS

GEOGRAPHIC = "EPSG:4490"  # CGCS2000
#: One dash pattern per category (registry order), so outlines differ without colour too.
CATEGORY_DASHES: dict[str, object] = dict(zip(CATEGORY_IDS, [
    "-", (0, (6, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (8, 2, 1, 2, 1, 2)), (0, (3, 3)),
    (0, (10, 3)), (0, (1, 3)), (0, (4, 1, 1, 1, 1, 1)),
], strict=True))
#: Dash patterns of the permits on one page, in turn; the lead itself is solid.
PERMIT_DASHES: tuple[object, ...] = ((0, (5, 2)), (0, (1, 1.2)), (0, (6, 2, 1, 2)), (0, (3, 3)),
                                     (0, (8, 2, 1, 2, 1, 2)))
#: A light halo under every line and label, so they read on dark and bright imagery alike.
HALO = [patheffects.withStroke(linewidth=3.2, foreground="white")]


@lru_cache(maxsize=16)
def _transformer(src: str, dst: str) -> Transformer:
    """pyproj builds a transformer in a tenth of a second: one per pair of CRSs, reused by every page."""
    return Transformer.from_crs(src, dst, always_xy=True)


def outline(ax: Axes, geoms: gpd.GeoSeries, colour: object, dashes: object, width: float = 1.4,
            hatch: str | None = None) -> None:
    """Polygon outlines with a white halo, dashed as given, optionally hatched inside."""
    if not len(geoms):
        return
    if hatch:
        geoms.plot(ax=ax, facecolor="none", edgecolor=colour, hatch=hatch, linewidth=0)
    geoms.boundary.plot(ax=ax, color=colour, linestyle=dashes, linewidth=width, path_effects=HALO)


def _nice_length(span_m: float) -> float:
    """A round length of about a quarter of the map's width."""
    target = span_m / 4
    power = 10 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target)


def scale_bar(ax: Axes, fontsize: float = 6) -> None:
    """A black-and-white bar of a round length in the lower left corner (the map is in metres)."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    length = _nice_length(x1 - x0)
    left, base, height = x0 + 0.05 * (x1 - x0), y0 + 0.06 * (y1 - y0), 0.015 * (y1 - y0)
    for i, colour in enumerate(("black", "white", "black", "white")):
        ax.add_patch(_rect(left + i * length / 4, base, length / 4, height, colour))
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.text(left + length / 2, base + 1.8 * height, label, ha="center", va="bottom", fontsize=fontsize,
            path_effects=HALO)


def _rect(x: float, y: float, w: float, h: float, colour: str) -> Rectangle:
    return Rectangle((x, y), w, h, facecolor=colour, edgecolor="black", linewidth=0.6, zorder=5)


def north_arrow(ax: Axes, crs: str, fontsize: float = 7) -> None:
    """An arrow to true north in the upper right corner, turned by the grid's convergence there."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    x, y = x0 + 0.92 * (x1 - x0), y0 + 0.80 * (y1 - y0)
    to_geo, to_map = _transformer(crs, GEOGRAPHIC), _transformer(GEOGRAPHIC, crs)
    lon, lat = to_geo.transform(x, y)
    nx, ny = to_map.transform(lon, lat + 0.01)
    angle = math.atan2(nx - x, ny - y)  # from grid north, clockwise
    size = 0.09 * (y1 - y0)
    dx, dy = size * math.sin(angle), size * math.cos(angle)
    ax.annotate("", xy=(x + dx / 2, y + dy / 2), xytext=(x - dx / 2, y - dy / 2),
                arrowprops={"arrowstyle": "-|>", "color": "black", "linewidth": 1.2, "mutation_scale": 10,
                            "path_effects": HALO})
    ax.text(x + 0.6 * dx, y + 0.6 * dy, "N", ha="center", va="bottom", fontsize=fontsize,
            path_effects=HALO)


def geographic_ticks(ax: Axes, crs: str, n: int = 3, fontsize: float = 5.5) -> None:
    """Longitudes along the bottom edge and latitudes along the left edge, where the ticks meet the frame."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    xs, ys = np.linspace(x0, x1, n + 2)[1:-1], np.linspace(y0, y1, n + 2)[1:-1]
    to_geo = _transformer(crs, GEOGRAPHIC)
    lons, _ = to_geo.transform(xs, np.full_like(xs, y0))
    _, lats = to_geo.transform(np.full_like(ys, x0), ys)
    ax.set_xticks(xs, [f"{v:.4f}°E" for v in lons], fontsize=fontsize)
    ax.set_yticks(ys, [f"{v:.4f}°N" for v in lats], fontsize=fontsize, rotation=90, va="center")
    ax.tick_params(length=2, pad=1)


def label_extent(label: Annotation, renderer: RendererBase) -> Bbox:
    """Where a label's text and its box lie on the page, without its leader line (display units)."""
    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer).expanded(1.25, 1.35)


def place_labels(ax: Axes, anchors: list[tuple[float, float]], texts: list[str], fontsize: float = 6.5) -> int:
    """Label each anchor (map units) beside it, trying positions around it until the label overlaps no
    other label; a leader line joins a label set further out. Returns how many labels could not
    be kept clear of all others (they are placed at the last position tried)."""
    fig = ax.figure
    renderer = (fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)).get_renderer()
    ax.apply_aspect()
    frame = ax.get_window_extent(renderer)
    ring = [(dx, dy) for r in (5, 12, 22, 34, 48) for dx, dy in
            ((r, r), (r, -r), (-r, r), (-r, -r), (r * 1.4, 0), (-r * 1.4, 0), (0, r * 1.4), (0, -r * 1.4))]
    taken: list[Bbox] = []
    crowded = 0
    for (x, y), text in zip(anchors, texts, strict=True):
        for i, (dx, dy) in enumerate(ring):
            far = i >= 8
            label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                                ha="center", va="center", zorder=6,
                                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "black",
                                      "linewidth": 0.4},
                                arrowprops={"arrowstyle": "-", "linewidth": 0.5, "color": "black"} if far else None)
            box = label_extent(label, renderer)
            clear = not any(box.overlaps(t) for t in taken) and frame.contains(box.x0, box.y0) \
                and frame.contains(box.x1, box.y1)
            if clear or i == len(ring) - 1:
                crowded += not clear
                taken.append(box)
                break
            label.remove()
    return crowded
