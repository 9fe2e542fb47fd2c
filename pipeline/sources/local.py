"""Local GeoTIFFs as an imagery source: any CRS, L1C or L2A, composited per window."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window as PixelWindow
from shapely import STRtree
from shapely.geometry import box

from detectors.bands import L2A_OFFSET, L2A_QUANTIFICATION, REFLECTANCE_BANDS, SCL_BAND, SCL_INVALID
from pipeline.config import DateRange
from pipeline.errors import InputError
from pipeline.sources.scene import Composite, ReadGrid

#: Processing baseline 04.00 (25 Jan 2022) added the −1000 offset to L2A and L1C products.
OFFSET_SINCE = date(2022, 1, 25)
_DATE_IN_NAME = re.compile(r"(20\d{2})[-_]?(\d{2})[-_]?(\d{2})")


def _normalise_band(name: str) -> str:
    m = re.fullmatch(r"(?i)b0?(\d{1,2}a?)", name.strip())
    if m:
        num = m.group(1).upper()
        return f"B{num.zfill(2) if num[-1] != 'A' else num.zfill(3)}"
    return name.strip().upper()


@dataclass(frozen=True)
class ImageFile:
    """One file: where its bands are, its date, its radiometry and its footprint in WGS84."""

    path: Path
    when: date
    band_index: dict[str, int]
    scale: float
    offset: float
    footprint: tuple[float, float, float, float]


def _acquisition_date(path: Path, tags: dict[str, str]) -> date:
    # not TIFFTAG_DATETIME: export tools set it to when the file was written
    for key in ("ACQUISITION_DATE",):
        if key in tags:
            text = tags[key].strip()[:10].replace(":", "-")
            try:
                return date.fromisoformat(text)
            except ValueError:
                pass
    m = _DATE_IN_NAME.search(path.name)
    if m:
        try:
            return datetime.strptime("".join(m.groups()), "%Y%m%d").date()
        except ValueError:
            pass
    raise InputError(path, "ACQUISITION_DATE", "the acquisition date is neither in the file's tags nor in its name",
                     "add a tag ACQUISITION_DATE=YYYY-MM-DD or put YYYYMMDD in the file name")


def inspect_file(path: Path, radiometry: str = "auto", bands: dict[str, int] | None = None) -> ImageFile:
    """Read what a GeoTIFF holds and check that every required band is there."""
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(path, None, f"cannot be opened as a raster: {exc}", "give a GeoTIFF") from None
    with src:
        if src.crs is None:
            raise InputError(path, "crs", "the raster has no CRS", "write the CRS into the file (gdal_edit.py -a_srs)")
        tags = src.tags()
        when = _acquisition_date(path, tags)
        if bands:
            index = {_normalise_band(k): v for k, v in bands.items()}
            beyond = [f"{k}: {v}" for k, v in index.items() if not 1 <= v <= src.count]
            if beyond:
                raise InputError(path, "source.bands", f"band index out of range ({', '.join(beyond)}); "
                                 f"the file has {src.count} band(s)", "number the bands from 1 as in QGIS")
        else:
            index = {_normalise_band(d): i + 1 for i, d in enumerate(src.descriptions) if d}
        missing = [b for b in REFLECTANCE_BANDS if b not in index]
        if missing:
            found = ", ".join(sorted(index)) or "no band names"
            raise InputError(path, "band descriptions", f"missing band(s) {', '.join(missing)} (found: {found})",
                             "name the bands in the file (band descriptions) or map them in the configuration: "
                             "source.bands: {B02: 1, B03: 2, ...}")
        level = radiometry if radiometry != "auto" else tags.get("PROCESSING_LEVEL", "")
        if np.dtype(src.dtypes[0]).kind == "f":
            scale, offset = 1.0, 0.0
        else:
            scale = float(tags.get("QUANTIFICATION_VALUE", L2A_QUANTIFICATION))
            if "BOA_ADD_OFFSET" in tags or "RADIO_ADD_OFFSET" in tags:
                offset = float(tags.get("BOA_ADD_OFFSET", tags.get("RADIO_ADD_OFFSET")))
            else:
                offset = L2A_OFFSET if (level in ("L2A", "L1C") and when >= OFFSET_SINCE) else 0.0
        footprint = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    return ImageFile(Path(path), when, index, scale, offset, footprint)


class LocalGeoTiffSource:
    """Composites of local GeoTIFFs, warped on the fly to each cell's grid."""

    bands = REFLECTANCE_BANDS

    def __init__(self, patterns: list[str], radiometry: str = "auto", bands: dict[str, int] | None = None) -> None:
        paths: list[Path] = []
        for pattern in patterns:
            hits = sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]
            if not hits or not Path(hits[0]).exists():
                raise InputError(pattern, "source.paths", "no file matches", "check the path or glob pattern")
            paths.extend(Path(h) for h in hits)
        paths = sorted(set(paths))  # a file matched by two patterns is still one acquisition
        self.acquisitions = [inspect_file(p, radiometry, bands) for p in paths]
        # a spatial index of footprints: a region has thousands of cells and of files
        self._footprints = STRtree([box(*a.footprint) for a in self.acquisitions])

    def composite(self, grid: ReadGrid, window: DateRange) -> Composite | None:
        grid_wgs84 = box(*transform_bounds(grid.crs, "EPSG:4326", *grid.bounds))
        hits = sorted(self._footprints.query(grid_wgs84, predicate="intersects"))
        chosen = [a for a in (self.acquisitions[i] for i in hits) if window.start <= a.when <= window.end]
        if not chosen:
            return None
        stack = np.full((len(chosen), len(self.bands), grid.height, grid.width), np.nan, dtype=np.float32)
        for k, acq in enumerate(chosen):
            stack[k] = read_reflectance(acq, grid, self.bands)
        refl = nan_median(stack)
        seen = np.isfinite(stack).all(axis=1)
        seen_dates = sorted({a.when for a, s in zip(chosen, seen, strict=True) if s.any()})  # only dates that saw it
        return Composite(reflectance=refl, valid=seen.any(axis=0), dates=seen_dates,
                         observations=seen.sum(axis=0).astype(np.uint8))


def nan_median(stack: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN (NaN where nothing was seen); several times faster than
    np.nanmedian for the few acquisitions of a window."""
    ordered = np.sort(stack, axis=0)  # NaN sorts last
    count = np.isfinite(stack).sum(axis=0)
    lo = np.clip((count - 1) // 2, 0, None)[None]
    hi = np.clip(count // 2, 0, stack.shape[0] - 1)[None]
    med = 0.5 * (np.take_along_axis(ordered, lo, 0)[0] + np.take_along_axis(ordered, hi, 0)[0])
    return np.where(count > 0, med, np.nan).astype(np.float32)


def _aligned_offset(src: rasterio.DatasetReader, grid: ReadGrid) -> tuple[int, int] | None:
    """Row and column of the grid's origin in the file when both share CRS and pixel grid."""
    st, gt = src.transform, grid.transform
    if src.crs != rasterio.crs.CRS.from_user_input(grid.crs) or (st.a, st.b, st.d, st.e) != (gt.a, gt.b, gt.d, gt.e):
        return None
    col, row = (gt.c - st.c) / st.a, (gt.f - st.f) / st.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(row), round(col)


def _read_on_grid(src: rasterio.DatasetReader, indexes: list[int], grid: ReadGrid, nodata: float,
                  resampling: Resampling) -> np.ndarray:
    """Bands on the grid: a plain window read where the pixel grids coincide, else a warp."""
    offset = _aligned_offset(src, grid)
    if offset is None:
        with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                       src_nodata=nodata, nodata=nodata, resampling=resampling) as vrt:
            return vrt.read(indexes)
    row, col = offset
    out = np.full((len(indexes), grid.height, grid.width), nodata, dtype=src.dtypes[0])
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + grid.height, src.height), min(col + grid.width, src.width)
    if r1 > r0 and c1 > c0:
        window = PixelWindow(c0, r0, c1 - c0, r1 - r0)
        out[:, r0 - row:r1 - row, c0 - col:c1 - col] = src.read(indexes, window=window)
    return out


def read_reflectance(acq: ImageFile, grid: ReadGrid, bands: tuple[str, ...]) -> np.ndarray:
    """Reflectance on the grid, NaN where the file has no data or SCL hides the ground."""
    with rasterio.open(acq.path) as src:
        nodata = src.nodata if src.nodata is not None else 0
        indexes = [acq.band_index[b] for b in bands]
        dn = _read_on_grid(src, indexes, grid, nodata, Resampling.bilinear).astype(np.float32)
        invalid = (dn == nodata).any(axis=0)
        if SCL_BAND in acq.band_index:
            scl = _read_on_grid(src, [acq.band_index[SCL_BAND]], grid, 0, Resampling.nearest)[0]
            invalid |= np.isin(scl, SCL_INVALID)
    refl = (dn + acq.offset) / acq.scale
    refl[:, invalid] = np.nan
    return refl
