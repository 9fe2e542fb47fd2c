"""From probability rasters to change polygons, and polygons split by cell edges back to one.

Small patches are removed at the minimum mapping unit of their category, but only once a patch
is whole: a patch that touches its cell's edge is kept until it has been merged with its
neighbours in the next cell, so a change on a cell boundary is never sieved away in halves.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from rasterio import features
from scipy import ndimage
from shapely.geometry import Polygon, shape
from shapely.geometry.base import BaseGeometry

from detectors.categories import CATEGORY_IDS, get_category
from pipeline.detection.decision import border_changes, name_changes, touches_border
from pipeline.sources.scene import in_metres

EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global: equal-area, valid worldwide
_EIGHT = np.ones((3, 3), dtype=bool)
COLUMNS = ["cell_id", "category", "p_mean", "p_max", "n_px", "touches_edge", "before_dates", "after_dates"]


def _around(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box of `mask` widened by one pixel within the raster; None where it is empty.

    Inside it every patch of `mask` is whole, and so is every hole that does not reach its edge.
    A hole that reaches the widened edge joins, through that ring of pixels outside the patches,
    the ground around them, which reaches the raster's border: in the whole raster it touches the
    border too, so it is never a hole to close in either. Patches touch the window's edge only
    where it is the raster's own border, as in the whole raster.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return (slice(max(rows[0] - 1, 0), min(rows[-1] + 2, mask.shape[0])),
            slice(max(cols[0] - 1, 0), min(cols[-1] + 2, mask.shape[1])))


def _patch_statistics(comp: np.ndarray, p: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and maximum of `p` over each patch `ids` of `comp`, from the patches' pixels alone
    (a few per cent of a band: sorting all of them, as ndimage.maximum does, cost more than the polygons)."""
    inside = comp > 0
    label, value = comp[inside], p[inside].astype(np.float64)
    total = np.bincount(label, weights=value, minlength=ids.max() + 1)
    count = np.bincount(label, minlength=ids.max() + 1)
    peak = np.full(ids.max() + 1, -np.inf)
    np.maximum.at(peak, label, value)
    return total[ids] / count[ids], peak[ids]


def polygons_from_labels(labels: np.ndarray, probs: np.ndarray, categories: tuple[str, ...], transform: Affine,
                         crs: str, cell_id: str, resolution: float, dates: tuple[str, str] = ("", ""),
                         outside: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """One polygon per 8-connected patch of each category, with its probability statistics.

    `dates` are the acquisition dates (comma-separated) of the before and after composites;
    `outside` marks pixels outside the cell's part of the AOI. A change next to them may go on in
    another zone's cell (where the AOI is cut at a UTM boundary), as a change on the raster's border
    may go on in the next cell: every patch of such a change is kept, marked `touches_edge`, for
    `merge_across_cells`, which names the change and holds it to the mapping unit once it is whole.
    """
    if not in_metres(crs):  # a pixel of 0.0001 degrees would hold no mapping unit: nothing would be found
        raise ValueError(f"{crs} is not in metres: mapping units are areas in metres, detect on a metric grid")
    on_border = border_changes(labels, outside)  # every patch of a change cut here waits for the merge
    rows = []
    for ci, cat in enumerate(categories):
        ours = labels == ci + 1
        window = _around(ours)
        if window is None:
            continue
        # the category's patches and the holes they close lie inside the window: the same
        # patches as in the whole band (see _around), found in a fraction of its pixels
        mask, cat_labels, p = ours[window].copy(), labels[window], probs[ci][window]
        cat_transform = transform @ Affine.translation(window[1].start, window[0].start)
        min_px = get_category(cat).unit_px(resolution)
        holes, n_holes = ndimage.label(~mask)
        hole_size = np.bincount(holes.ravel(), minlength=n_holes + 1)
        small_hole = (hole_size < min_px) & ~touches_border(holes, n_holes)
        cut = on_border[window] & mask
        if cut.any():  # a change cut here closes its holes once joined, under the unit of the name it gets
            small_hole[np.unique(holes[ndimage.binary_dilation(cut) & ~mask])] = False
        small_hole[0] = False
        mask |= small_hole[holes] & (cat_labels == 0)  # never take pixels another category holds
        comp, n = ndimage.label(mask, structure=_EIGHT)
        size = np.bincount(comp.ravel(), minlength=n + 1)
        edge = np.bincount(comp[on_border[window]], minlength=n + 1) > 0
        edge[0] = False
        keep = (size >= min_px) | edge
        keep[0] = False
        comp = np.where(keep[comp], comp, 0).astype(np.int32)
        if not comp.any():
            continue
        ids = np.flatnonzero(keep)
        p_mean, p_max = _patch_statistics(comp, p, ids)
        pieces: dict[int, list] = {}
        for geom, value in features.shapes(comp, mask=comp > 0, transform=cat_transform, connectivity=8):
            pieces.setdefault(int(value), []).append(shape(geom))
        for k, cid in enumerate(ids):
            rows.append({"cell_id": cell_id, "category": cat, "p_mean": float(p_mean[k]), "p_max": float(p_max[k]),
                         "n_px": int(size[cid]), "touches_edge": bool(edge[cid]), "before_dates": dates[0],
                         "after_dates": dates[1], "geometry": shapely.union_all(pieces[int(cid)])})
    if not rows:
        return gpd.GeoDataFrame(columns=[*COLUMNS, "geometry"], geometry="geometry", crs=crs)
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)


def _join_unique(values: pd.Series) -> str:
    return ",".join(sorted({v for text in values for v in str(text).split(",") if v}))


#: Patches on the two sides of a UTM zone boundary come from different pixel grids and do not
#: share exact edges; within this distance they are taken as one change.
ZONE_SEAM_TOLERANCE_M = 15.0


def _touching_pairs(edge: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of edge patches that are one change: touching within a zone, near across zones."""
    left, right = edge.sindex.query(edge.geometry, predicate="dwithin", distance=ZONE_SEAM_TOLERANCE_M)
    left, right = left[left != right], right[left != right]
    zone = edge.cell_id.str.split("_").str[0].to_numpy()
    geoms = edge.geometry.to_numpy()
    one = (zone[left] != zone[right]) | shapely.intersects(geoms[left], geoms[right])
    return left[one], right[one]


def _components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The connected group of each of `n` patches, linked by the pairs `left`-`right`."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(left)), (left, right)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _named_changes(edge: gpd.GeoDataFrame, resolution: float) -> tuple[pd.Series, pd.Series]:
    """Which change each edge patch is part of, and the category it takes: by the rule a change
    seen whole takes (`pipeline.detection.decision.name_changes`), from the pixels of every
    category in all its parts. A change that rule leaves to its pixels' own labels is one change
    per category's touching parts, as inside a cell."""
    left, right = _touching_pairs(edge)
    group = _components(len(edge), left, right)
    k = len(CATEGORY_IDS) + 1
    label = edge.category.map({c: i + 1 for i, c in enumerate(CATEGORY_IDS)}).to_numpy()
    votes = np.bincount(group * k + label, weights=edge.n_px.to_numpy(), minlength=(group.max() + 1) * k)
    name = name_changes(votes.reshape(-1, k).astype(np.int64), CATEGORY_IDS, resolution)[group]
    own = name < 0
    category = edge.category.to_numpy()
    same = category[left] == category[right]
    by_category = _components(len(edge), left[same], right[same])
    change = np.where(own, group.max() + 1 + by_category, group)
    category = np.where(own, category, np.array(["", *CATEGORY_IDS], dtype=object)[name])
    return pd.Series(change, index=edge.index, name="change"), pd.Series(category, index=edge.index)


#: Joined parts are closed by this much and opened again to find their holes: parts of one change that
#: touch at a corner only (8-connected pixels) close a hole the raster sees, which the polygons leave open.
_CORNER_M = 0.01


def _close_small_holes(geom: BaseGeometry, min_px: int, resolution: float,
                       others: gpd.GeoSeries) -> tuple[BaseGeometry, int]:
    """`geom` with its holes of fewer than `min_px` pixels closed, as a change seen whole in a raster
    closes them; and the pixels closed. A hole that holds another change (`others`) stays open."""
    if isinstance(geom, Polygon) and not geom.interiors:  # one part, no ring inside: nothing to close
        return geom, 0
    grown = geom.buffer(_CORNER_M, join_style="mitre")
    closed_px, polygons = 0, []
    for part in getattr(grown, "geoms", [grown]):
        kept = []
        for ring in part.interiors:
            hole = Polygon(ring).buffer(_CORNER_M, join_style="mitre")  # the hole's own outline again
            px = round(hole.area / resolution**2)
            if px < min_px and not len(others.sindex.query(hole, predicate="contains")):
                closed_px += px
            else:
                kept.append(ring)
        polygons.append(Polygon(part.exterior, kept))
    if not closed_px:
        return geom, 0
    return shapely.union_all(polygons).buffer(-_CORNER_M, join_style="mitre"), closed_px


def merge_across_cells(parts: list[gpd.GeoDataFrame], resolution: float) -> gpd.GeoDataFrame:
    """Join the patches of changes that were cut by cell edges, name each change, then drop what is
    still below the mapping unit.

    Patches are joined where they touch (neighbouring cells of one zone share exact edges, and
    keep them in the equal-area CRS) or lie within ZONE_SEAM_TOLERANCE_M across a zone boundary,
    whatever category each pixel was given: the change they make is named, and its small holes
    closed, by the rule of a change seen whole (`pipeline.detection.decision`), so a change takes
    the same category and outline whether or not a cell edge cuts it. Its probabilities are those
    of its parts' own categories, weighted by their pixels. The mapping unit is held in pixels of
    `resolution` metres, as inside each cell; reported areas are computed in the equal-area CRS.
    """
    frames = [p.to_crs(EQUAL_AREA_CRS) for p in parts if not p.empty]
    if not frames:
        return gpd.GeoDataFrame(columns=[*COLUMNS, "area_m2", "geometry"], geometry="geometry", crs=EQUAL_AREA_CRS)
    gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=EQUAL_AREA_CRS)
    merged = [gdf[~gdf.touches_edge]]
    edge = gdf[gdf.touches_edge].reset_index(drop=True)
    if not edge.empty:
        group, category = _named_changes(edge, resolution)
        w = edge.n_px.astype(float)
        out = gpd.GeoDataFrame({
            "category": category.groupby(group).first(),
            "p_mean": (edge.p_mean * w).groupby(group).sum() / w.groupby(group).sum(),
            "p_max": edge.p_max.groupby(group).max(),
            "n_px": edge.n_px.groupby(group).sum(),
            **{col: edge[col].groupby(group).agg(_join_unique) for col in ("cell_id", "before_dates", "after_dates")},
        }, geometry=edge.geometry.groupby(group).agg(lambda g: shapely.union_all(g.values)), crs=EQUAL_AREA_CRS)
        closed = [_close_small_holes(g, get_category(c).unit_px(resolution), resolution, gdf.geometry)
                  for g, c in zip(out.geometry, out.category, strict=True)]
        out["geometry"] = [g for g, _ in closed]
        out["n_px"] += [px for _, px in closed]
        out["touches_edge"] = True
        merged.append(out)
    result = gpd.GeoDataFrame(pd.concat(merged, ignore_index=True), crs=EQUAL_AREA_CRS)
    result["area_m2"] = result.geometry.area
    mmu = result.category.map(lambda c: get_category(c).min_area_m2)
    keep = result.n_px * resolution**2 >= mmu
    return result[keep].reset_index(drop=True)[[*COLUMNS, "area_m2", "geometry"]]
