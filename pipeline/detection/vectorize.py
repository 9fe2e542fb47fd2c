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
from shapely.geometry import shape

from detectors.categories import get_category
from pipeline.sources.scene import in_metres

EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global: equal-area, valid worldwide
_EIGHT = np.ones((3, 3), dtype=bool)
COLUMNS = ["cell_id", "category", "p_mean", "p_max", "n_px", "touches_edge", "before_dates", "after_dates"]


def _touches_border(lab: np.ndarray, n: int, open_edge: np.ndarray | None = None) -> np.ndarray:
    """Which labels reach the raster's border or a pixel of `open_edge` (beyond which the change
    may go on: the neighbouring zone's side of a UTM boundary)."""
    border = [lab[0], lab[-1], lab[:, 0], lab[:, -1]]
    if open_edge is not None:
        border.append(lab[open_edge])
    hit = np.zeros(n + 1, dtype=bool)
    hit[np.unique(np.concatenate(border))] = True
    hit[0] = False
    return hit


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
    `outside` marks pixels outside the cell's part of the AOI. A patch next to them may go on in
    another zone's cell (where the AOI is cut at a UTM boundary), so it is kept for the merge like
    a patch on the raster border; the merge holds it to the mapping unit.
    """
    if not in_metres(crs):  # a pixel of 0.0001 degrees would hold no mapping unit: nothing would be found
        raise ValueError(f"{crs} is not in metres: mapping units are areas in metres, detect on a metric grid")
    open_edge = None if outside is None else ndimage.binary_dilation(outside, structure=_EIGHT) & ~outside
    rows = []
    for ci, cat in enumerate(categories):
        ours = labels == ci + 1
        window = _around(ours)
        if window is None:
            continue
        # the category's patches and the holes they close lie inside the window: the same
        # patches as in the whole band (see _around), found in a fraction of its pixels
        mask, cat_labels, p = ours[window].copy(), labels[window], probs[ci][window]
        cat_edge = None if open_edge is None else open_edge[window]
        cat_transform = transform @ Affine.translation(window[1].start, window[0].start)
        min_px = get_category(cat).unit_px(resolution)
        holes, n_holes = ndimage.label(~mask)
        hole_size = np.bincount(holes.ravel(), minlength=n_holes + 1)
        small_hole = (hole_size < min_px) & ~_touches_border(holes, n_holes)
        small_hole[0] = False
        mask |= small_hole[holes] & (cat_labels == 0)  # never take pixels another category holds
        comp, n = ndimage.label(mask, structure=_EIGHT)
        size = np.bincount(comp.ravel(), minlength=n + 1)
        edge = _touches_border(comp, n, cat_edge)
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


def _components(edge: gpd.GeoDataFrame) -> np.ndarray:
    """Connected groups of edge patches: touching within a zone, near across zones."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    left, right = edge.sindex.query(edge.geometry, predicate="dwithin", distance=ZONE_SEAM_TOLERANCE_M)
    zone = edge.cell_id.str.split("_").str[0].to_numpy()
    geoms = edge.geometry.to_numpy()
    keep = [(i, j) for i, j in zip(left, right, strict=True)
            if i != j and (zone[i] != zone[j] or geoms[i].intersects(geoms[j]))]
    n = len(edge)
    rows, cols = (np.array(x, dtype=int) for x in zip(*keep, strict=True)) if keep else (np.zeros(0, int),) * 2
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def merge_across_cells(parts: list[gpd.GeoDataFrame], resolution: float) -> gpd.GeoDataFrame:
    """Join patches that were split by cell edges, then drop what is still below the mapping unit.

    Patches are joined where they touch (neighbouring cells of one zone share exact edges, and
    keep them in the equal-area CRS) or lie within ZONE_SEAM_TOLERANCE_M across a zone boundary,
    whatever category each side gave its part: one change is one polygon with one category, as
    inside a cell (`pipeline.detection.decision`), and it takes the category whose parts hold the
    most pixels. The mapping unit is held in pixels of `resolution` metres, as inside each cell;
    reported areas are computed in the equal-area CRS.
    """
    frames = [p.to_crs(EQUAL_AREA_CRS) for p in parts if not p.empty]
    if not frames:
        return gpd.GeoDataFrame(columns=[*COLUMNS, "area_m2", "geometry"], geometry="geometry", crs=EQUAL_AREA_CRS)
    gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=EQUAL_AREA_CRS)
    merged = [gdf[~gdf.touches_edge]]
    edge = gdf[gdf.touches_edge].reset_index(drop=True)
    if not edge.empty:
        group = pd.Series(_components(edge), index=edge.index, name="change")
        w = edge.n_px.astype(float)
        by_category = edge.groupby([group, edge.category]).n_px.sum().reset_index(name="px")
        winner = by_category.sort_values(["px", "category"], ascending=[False, True]).drop_duplicates("change")
        out = gpd.GeoDataFrame({
            "category": winner.set_index("change").category,
            "p_mean": (edge.p_mean * w).groupby(group).sum() / w.groupby(group).sum(),
            "p_max": edge.p_max.groupby(group).max(),
            "n_px": edge.n_px.groupby(group).sum(),
            **{col: edge[col].groupby(group).agg(_join_unique) for col in ("cell_id", "before_dates", "after_dates")},
        }, geometry=edge.geometry.groupby(group).agg(lambda g: shapely.union_all(g.values)), crs=EQUAL_AREA_CRS)
        out["touches_edge"] = True
        merged.append(out)
    result = gpd.GeoDataFrame(pd.concat(merged, ignore_index=True), crs=EQUAL_AREA_CRS)
    result["area_m2"] = result.geometry.area
    mmu = result.category.map(lambda c: get_category(c).min_area_m2)
    keep = result.n_px * resolution**2 >= mmu
    return result[keep].reset_index(drop=True)[[*COLUMNS, "area_m2", "geometry"]]
