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

EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global: equal-area, valid worldwide
_EIGHT = np.ones((3, 3), dtype=bool)
COLUMNS = ["cell_id", "category", "p_mean", "p_max", "n_px", "touches_edge", "before_dates", "after_dates"]


def decide(probs: np.ndarray, categories: tuple[str, ...], thresholds: dict[str, float]) -> np.ndarray:
    """Category index + 1 of each pixel (0 = no change): the most probable category above its threshold."""
    thr = np.array([thresholds[c] for c in categories], dtype=np.float32)[:, None, None]
    above = probs >= thr
    scored = np.where(above, probs, -1.0)
    labels = scored.argmax(axis=0).astype(np.uint8) + 1
    labels[~above.any(axis=0)] = 0
    return labels


def _touches_border(lab: np.ndarray, n: int) -> np.ndarray:
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    hit = np.zeros(n + 1, dtype=bool)
    hit[border] = True
    hit[0] = False
    return hit


def polygons_from_labels(labels: np.ndarray, probs: np.ndarray, categories: tuple[str, ...], transform: Affine,
                         crs: str, cell_id: str, resolution: float,
                         dates: tuple[str, str] = ("", "")) -> gpd.GeoDataFrame:
    """One polygon per 8-connected patch of each category, with its probability statistics.

    `dates` are the acquisition dates (comma-separated) of the before and after composites.
    """
    rows = []
    pixel_area = resolution * resolution
    for ci, cat in enumerate(categories):
        mask = labels == ci + 1
        if not mask.any():
            continue
        min_px = int(np.ceil(get_category(cat).min_area_m2 / pixel_area))
        holes, n_holes = ndimage.label(~mask)
        hole_size = np.bincount(holes.ravel(), minlength=n_holes + 1)
        small_hole = (hole_size < min_px) & ~_touches_border(holes, n_holes)
        small_hole[0] = False
        mask |= small_hole[holes]
        comp, n = ndimage.label(mask, structure=_EIGHT)
        size = np.bincount(comp.ravel(), minlength=n + 1)
        edge = _touches_border(comp, n)
        keep = (size >= min_px) | edge
        keep[0] = False
        comp = np.where(keep[comp], comp, 0).astype(np.int32)
        if not comp.any():
            continue
        ids = np.flatnonzero(keep)
        p = probs[ci]
        p_mean = ndimage.mean(p, comp, ids)
        p_max = ndimage.maximum(p, comp, ids)
        pieces: dict[int, list] = {}
        for geom, value in features.shapes(comp, mask=comp > 0, transform=transform, connectivity=8):
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


def merge_across_cells(parts: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    """Join patches that were split by cell edges, then drop what is still below the mapping unit.

    Merging happens in each UTM zone's own CRS, where neighbouring cells share exact edges; the
    result is in the equal-area CRS, with areas computed there.
    """
    merged = []
    frames = [p for p in parts if not p.empty]
    if not frames:
        return gpd.GeoDataFrame(columns=[*COLUMNS, "area_m2", "geometry"], geometry="geometry", crs=EQUAL_AREA_CRS)
    by_crs: dict[str, list[gpd.GeoDataFrame]] = {}
    for f in frames:
        by_crs.setdefault(f.crs.to_string(), []).append(f)
    for crs, group in by_crs.items():
        gdf = gpd.GeoDataFrame(pd.concat(group, ignore_index=True), crs=crs)
        inner = gdf[~gdf.touches_edge]
        merged.append(inner.to_crs(EQUAL_AREA_CRS))
        edge = gdf[gdf.touches_edge]
        for cat, pieces in edge.groupby("category"):
            union = shapely.union_all(pieces.geometry.buffer(0.01).values)  # close float gaps on shared edges
            blobs = gpd.GeoDataFrame(geometry=list(getattr(union, "geoms", [union])), crs=crs)
            blobs["geometry"] = blobs.geometry.buffer(-0.01)
            pts = pieces.copy()
            pts["geometry"] = pieces.geometry.representative_point()
            joined = gpd.sjoin(pts, blobs, predicate="within", how="inner")
            w = joined.n_px.astype(float)
            stats = pd.DataFrame({
                "p_mean": (joined.p_mean * w).groupby(joined.index_right).sum() / w.groupby(joined.index_right).sum(),
                "p_max": joined.p_max.groupby(joined.index_right).max(),
                "n_px": joined.n_px.groupby(joined.index_right).sum(),
                **{col: joined[col].groupby(joined.index_right).agg(_join_unique)
                   for col in ("cell_id", "before_dates", "after_dates")},
            })
            out = blobs.join(stats, how="inner")
            out["category"] = cat
            out["touches_edge"] = True
            merged.append(out.to_crs(EQUAL_AREA_CRS))
    result = gpd.GeoDataFrame(pd.concat(merged, ignore_index=True), crs=EQUAL_AREA_CRS)
    result["area_m2"] = result.geometry.area
    mmu = result.category.map(lambda c: get_category(c).min_area_m2)
    return result[result.area_m2 >= mmu].reset_index(drop=True)[[*COLUMNS, "area_m2", "geometry"]]
