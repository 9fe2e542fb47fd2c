"""The way a TorchGeo user would run our model over a pair, as the benchmark's point of comparison.

A `RasterDataset` per date joined by an `IntersectionDataset`, a `GridGeoSampler` of square
chips, a `DataLoader` with worker processes, each chip's probabilities stitched into a
full-size array (the same linear taper over the chip overlap as our tiling), then the same
decision and vectorising as `detect`. The chips start at the pair's lower-left corner and the
last ones overhang the raster, as GridGeoSampler lays them out; what falls outside is nodata
and is cropped off. The model, its radiometry and its decision rule are the ones `detect` uses,
so only the loop around the model differs (torchgeo is a dev dependency, for `make bench`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
from affine import Affine

from detectors import load_detector
from detectors.categories import CATEGORY_IDS
from detectors.interface import Detector
from pipeline.detection.decision import decide
from pipeline.detection.tiling import Tile, blend_weights
from pipeline.detection.vectorize import merge_across_cells, polygons_from_labels
from pipeline.inputs.zones import load_zones
from pipeline.sources.local import ImageFile, inspect_file
from pipeline.sources.scene import ReadGrid


@dataclass
class LoopResult:
    """The stitched probabilities (categories, rows, cols), the valid mask and the change polygons."""

    probabilities: np.ndarray
    valid: np.ndarray
    polygons: gpd.GeoDataFrame
    grid: ReadGrid


def _dataset(image: ImageFile, bands: tuple[str, ...]):  # -> torchgeo RasterDataset
    """One date's file as a RasterDataset reading the detector's bands in its order."""
    from torchgeo.datasets import RasterDataset

    class Date(RasterDataset):
        filename_glob = image.path.name
        all_bands = tuple(sorted(image.band_index, key=image.band_index.get))

    return Date(paths=[image.path], bands=list(bands))


def _reflectance(dn: np.ndarray, image: ImageFile) -> tuple[np.ndarray, np.ndarray]:
    """Digital numbers (N, bands, H, W) as reflectance, NaN where the file has no data (0), as `read_pair` does."""
    invalid = (dn == 0).any(axis=1)
    refl = (dn + image.offset) / image.scale
    refl[np.broadcast_to(invalid[:, None], refl.shape)] = np.nan
    return refl.astype(np.float32), ~invalid


def torchgeo_loop(before: Path, after: Path, detector: Detector | str, chip: int = 512, overlap: int = 32,
                  batch_size: int = 2, workers: int = 2, device: str = "cpu") -> LoopResult:
    """Probabilities and polygons of a pair computed through TorchGeo's dataset, sampler and loader,
    with the context zones `detect` applies when it is given no zone layers."""
    import rasterio
    from torch.utils.data import DataLoader
    from torchgeo.datasets import IntersectionDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler

    zones = load_zones([], list(CATEGORY_IDS))  # what `detect` knows of zones without zone layers
    if isinstance(detector, str):  # built for the categories that leaves, as `detect` builds it
        detector = load_detector(detector, [c for c in CATEGORY_IDS if c not in zones.switched_off], device)
    first, second = inspect_file(Path(before)), inspect_file(Path(after))
    with rasterio.open(first.path) as src:
        grid = ReadGrid(src.crs.to_string(), src.transform, src.width, src.height)
    dataset = IntersectionDataset(_dataset(first, detector.bands), _dataset(second, detector.bands))
    sampler = GridGeoSampler(dataset, size=chip, stride=chip - overlap)
    loader = DataLoader(dataset, sampler=sampler, batch_size=batch_size, num_workers=workers,
                        collate_fn=stack_samples)
    height, width, res = grid.height, grid.width, abs(grid.transform.a)
    if min(height, width) < chip:  # GridGeoSampler would sample nothing and the answer would be empty
        raise ValueError(f"{first.path}: {width} x {height} px is smaller than one {chip} px chip")
    acc = np.zeros((len(detector.categories), height, width), dtype=np.float32)
    weight = np.zeros((height, width), dtype=np.float32)
    valid = np.zeros((height, width), dtype=bool)
    n = len(detector.bands)
    for batch in loader:
        dn = batch["image"].numpy()
        refl_before, seen_before = _reflectance(dn[:, :n], first)
        refl_after, seen_after = _reflectance(dn[:, n:], second)
        seen = seen_before & seen_after
        chips = [zones.masks(ReadGrid(grid.crs, Affine(res, 0, x.start, 0, -res, y.stop), chip, chip))
                 for x, y, _ in batch["bounds"]]
        probs = detector.predict(refl_before, refl_after, seen, {z: np.stack([c[z] for c in chips]) for z in chips[0]})
        for query, p, s in zip(batch["bounds"], probs, seen, strict=True):
            x, y, _ = query
            row, col = round((grid.transform.f - y.stop) / res), round((x.start - grid.transform.c) / res)
            r0, c0 = max(row, 0), max(col, 0)
            r1, c1 = min(row + chip, height), min(col + chip, width)
            if r1 <= r0 or c1 <= c0:
                continue
            inside = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
            w = blend_weights(Tile(r0, c0, r1 - r0, c1 - c0), height, width, overlap)
            acc[:, r0:r1, c0:c1] += p[(slice(None), *inside)] * w
            weight[r0:r1, c0:c1] += w
            valid[r0:r1, c0:c1] = s[inside]
    np.divide(acc, weight, out=acc, where=weight > 0)
    acc *= valid
    labels = decide(acc, detector.categories, detector.thresholds, valid, res)
    polys = polygons_from_labels(labels, acc, detector.categories, grid.transform, grid.crs, "pair", res)
    return LoopResult(acc, valid, merge_across_cells([polys], res), grid)
