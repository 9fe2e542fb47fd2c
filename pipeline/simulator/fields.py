"""Spatially coherent random fields and shapes, the raw material of simulated landscapes."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Polygon, box
from shapely.ops import unary_union


def smooth_field(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise, rescaled to zero mean and unit variance."""
    noise = rng.standard_normal(shape).astype(np.float32)
    field = ndimage.gaussian_filter(noise, sigma=scale_px, mode="reflect")
    return (field - field.mean()) / (field.std() + 1e-9)


def voronoi_patches(shape: tuple[int, int], mean_size_px: float, rng: np.random.Generator) -> np.ndarray:
    """Patch ids from nearest random seed points: fields, stands and parcels of varying size."""
    from scipy.spatial import cKDTree

    rows, cols = shape
    n_seeds = max(4, int(rows * cols / mean_size_px**2))
    seeds = rng.uniform((0, 0), (rows, cols), size=(n_seeds, 2))
    rr, cc = np.mgrid[0:rows, 0:cols]
    # a smooth jitter bends the straight Voronoi edges into natural boundaries
    jitter = mean_size_px * 0.15
    rr = rr + jitter * smooth_field(shape, mean_size_px / 4, rng)
    cc = cc + jitter * smooth_field(shape, mean_size_px / 4, rng)
    _, ids = cKDTree(seeds).query(np.column_stack([rr.ravel(), cc.ravel()]))
    return ids.reshape(shape).astype(np.int32)


def blob(center: tuple[float, float], area_m2: float, rng: np.random.Generator) -> Polygon:
    """An irregular, roughly convex patch (ploughed field, clearing, burn) of a given area."""
    n = 14
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.7, 1.3, n)
    pts = [(np.cos(a) * r, np.sin(a) * r) for a, r in zip(angles, radii, strict=True)]
    poly = Polygon(pts).convex_hull.buffer(0.15).simplify(0.05)
    poly = affinity.scale(poly, rng.uniform(0.7, 1.4), 1.0)
    poly = affinity.rotate(poly, rng.uniform(0, 180))
    factor = np.sqrt(area_m2 / poly.area)
    poly = affinity.scale(poly, factor, factor, origin=(0, 0))
    return affinity.translate(poly, *center)


def rectangle(center: tuple[float, float], area_m2: float, rng: np.random.Generator) -> Polygon:
    """A rotated rectangle (yard, pad, pit, quarry bench) of a given area."""
    aspect = rng.uniform(1.0, 2.5)
    width = np.sqrt(area_m2 / aspect)
    rect = box(-width * aspect / 2, -width / 2, width * aspect / 2, width / 2)
    rect = affinity.rotate(rect, rng.uniform(0, 180))
    return affinity.translate(rect, *center)



def compound(center: tuple[float, float], area_m2: float, rng: np.random.Generator) -> Polygon:
    """Joined rectangles (L, T or comb shapes) of a given area: buildings with their yards."""
    first = box(-0.5, -0.15, 0.5, 0.15)
    parts = [first]
    edge = first.exterior
    for _ in range(int(rng.integers(1, 3))):
        long, short = rng.uniform(0.3, 0.8), rng.uniform(0.12, 0.3)
        part = box(-short / 2, -long / 2, short / 2, long / 2)  # across the first one
        x, y = edge.interpolate(rng.uniform(0, edge.length)).coords[0]
        parts.append(affinity.translate(part, x, y))
    poly = unary_union(parts)
    poly = affinity.rotate(poly, rng.uniform(0, 180), origin=(0, 0))
    factor = np.sqrt(area_m2 / poly.area)
    poly = affinity.scale(poly, factor, factor, origin=(0, 0))
    return affinity.translate(poly, *center)


#: Shape makers by the names the plans and SHAPE_CHOICES use.
SHAPES = {"rect": rectangle, "blob": blob, "compound": compound}
