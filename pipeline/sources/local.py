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
#: Median reflectance a real scene can have (water ~0.02, snow and cloud ~0.9): a file's values
#: outside this range after scale and offset mean its radiometric metadata is wrong.
PLAUSIBLE_MEDIAN = (-0.5, 2.0)
#: Above this median a floating-point file holds digital numbers (0-10000), not reflectance (0-1).
REFLECTANCE_MAX_MEDIAN = 2.0
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
    float_digital_numbers: bool = False  # a floating-point file holding 0-10000, converted like an integer one


class DamagedFileError(InputError):
    """A file that opens but whose data cannot be read (cut short or garbled): only the cells that
    read the damaged part are lost, so a run records them as failed instead of stopping."""


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


def _number_tag(path: Path, tags: dict[str, str], key: str, default: float) -> float:
    text = tags.get(key)
    try:
        value = default if text is None else float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise InputError(path, key, f"{text!r} is not a number",
                         f"correct the tag (gdal_edit.py -mo {key}=...) or remove it")
    return value


def _span(centre: int, size: int, block: int, limit: int) -> tuple[int, int]:
    """Start and length of up to `size` pixels around `centre` along one axis of `limit`, kept inside
    the block of `block` pixels that holds `centre` where blocks are that large: one block decoded,
    not the four a window across block edges would need."""
    lo, hi = (centre // block * block, min(centre // block * block + block, limit)) if block >= size else (0, limit)
    start = min(max(centre - size // 2, lo), max(lo, hi - size))
    return start, min(size, hi - start)


def _sample(src: rasterio.DatasetReader, band: int, nodata: float, size: int = 64) -> np.ndarray:
    """Valid values of one band in five small windows (centre and quarter points): enough to judge
    the radiometry without reading a whole tile. Empty where the file's data cannot be read there:
    the cells that read it fail and name the file."""
    values = []
    block_rows, block_cols = src.block_shapes[band - 1]
    for fy, fx in ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)):
        col, width = _span(int(src.width * fx), size, block_cols, src.width)
        row, height = _span(int(src.height * fy), size, block_rows, src.height)
        try:
            a = src.read(band, window=PixelWindow(col, row, width, height))
        except rasterio.errors.RasterioIOError:
            continue
        values.append(a[(a != nodata) & np.isfinite(a)])
    return np.concatenate(values) if values else np.zeros(0)


def _radiometry(src: rasterio.DatasetReader, path: Path, tags: dict[str, str], level: str, when: date,
                band: int) -> tuple[float, float, bool]:
    """Scale and offset that make the file's values reflectance, and whether it is a floating-point
    file of digital numbers. Checked on a sample of the values: nonsense metadata (a
    QUANTIFICATION_VALUE of 0) would otherwise turn every pixel into no data and every cell into
    "no change"."""
    sample = _sample(src, band, src.nodata if src.nodata is not None else 0)
    median = float(np.median(sample)) if sample.size else None
    is_float = np.dtype(src.dtypes[0]).kind == "f"
    if is_float and (median is None or median <= REFLECTANCE_MAX_MEDIAN):
        return 1.0, 0.0, False
    scale = _number_tag(path, tags, "QUANTIFICATION_VALUE", L2A_QUANTIFICATION)
    if scale <= 0:
        raise InputError(path, "QUANTIFICATION_VALUE", f"{scale:g} is not a scale (reflectance = (value + offset) / "
                         "QUANTIFICATION_VALUE)", "set it to the product's value (Sentinel-2: 10000) with "
                         "gdal_edit.py -mo QUANTIFICATION_VALUE=10000, or remove the tag")
    key = next((k for k in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET") if k in tags), None)
    if key:
        offset = _number_tag(path, tags, key, 0.0)
    else:
        offset = L2A_OFFSET if (level in ("L2A", "L1C") and when >= OFFSET_SINCE) else 0.0
    if median is not None and not PLAUSIBLE_MEDIAN[0] <= (median + offset) / scale <= PLAUSIBLE_MEDIAN[1]:
        raise InputError(path, "QUANTIFICATION_VALUE", f"the values (median {median:g}) give a median reflectance "
                         f"of {(median + offset) / scale:.3g} with scale {scale:g} and offset {offset:g}, outside "
                         f"{PLAUSIBLE_MEDIAN[0]}..{PLAUSIBLE_MEDIAN[1]}: the radiometric metadata is wrong",
                         "correct the QUANTIFICATION_VALUE and BOA_ADD_OFFSET tags (Sentinel-2 L2A: 10000 and -1000 "
                         "from 2022-01-25 on) or give reflectance (0-1)")
    return scale, offset, is_float


def inspect_file(path: Path, radiometry: str = "auto", bands: dict[str, int] | None = None) -> ImageFile:
    """Read what a GeoTIFF holds and check that every required band is there and its radiometry
    makes sense."""
    if not Path(path).exists():
        raise InputError(path, None, "file not found", "check the path")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(path, None, f"cannot be opened as a raster: {exc}", "give a GeoTIFF; if it is one, "
                         "it is damaged or incomplete: fetch or export it again") from None
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
        scale, offset, float_dn = _radiometry(src, Path(path), tags, level, when, index["B04"])
        footprint = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    return ImageFile(Path(path), when, index, scale, offset, footprint, float_dn)


def radiometry_notes(files: list[ImageFile], examples: int = 3) -> list[str]:
    """One note for all floating-point files found to hold digital numbers: a region has thousands of files."""
    converted = [f.path.name for f in files if f.float_digital_numbers]
    if not converted:
        return []
    shown = ", ".join(converted[:examples]) + (f" and {len(converted) - examples} more" if len(converted) > examples
                                               else "")
    return [f"{len(converted)} floating-point file(s) hold digital numbers (values in the thousands), not "
            f"reflectance (0-1): converted as integer files are (QUANTIFICATION_VALUE or 10000, and the offset) "
            f"({shown})"]


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
        self.notes = radiometry_notes(self.acquisitions)
        # a spatial index of footprints: a region has thousands of cells and of files
        self._footprints = STRtree([box(*a.footprint) for a in self.acquisitions])

    def _chosen(self, grid: ReadGrid, window: DateRange) -> list[ImageFile]:
        """The window's files whose footprint reaches the grid."""
        grid_wgs84 = box(*transform_bounds(grid.crs, "EPSG:4326", *grid.bounds))
        hits = sorted(self._footprints.query(grid_wgs84, predicate="intersects"))
        return [a for a in (self.acquisitions[i] for i in hits) if window.start <= a.when <= window.end]

    def composite(self, grid: ReadGrid, window: DateRange) -> Composite | None:
        chosen = self._chosen(grid, window)
        return composite_of(chosen, grid, self.bands) if chosen else None

    def acquisition_reads(self, grid: ReadGrid, window: DateRange) -> list[tuple[date, np.ndarray]]:
        """Each file of the window on the grid, not composited (date, reflectance as `read_reflectance`),
        by date: what a lead's confidence counts its confirming acquisitions on."""
        return separate_reads(self._chosen(grid, window), grid, self.bands)


def separate_reads(acquisitions: list[ImageFile], grid: ReadGrid, bands: tuple[str, ...]
                   ) -> list[tuple[date, np.ndarray]]:
    """Each file on the grid as `read_reflectance` reads it, not composited, in date order."""
    return [(a.when, read_reflectance(a, grid, bands)) for a in sorted(acquisitions, key=lambda a: a.when)]


def composite_of(acquisitions: list[ImageFile], grid: ReadGrid, bands: tuple[str, ...]) -> Composite:
    """The per-pixel cloud-masked median of acquisitions on a grid; every source composites through here.

    Files of one date are one observation, mosaicked first: overlapping tiles of a pass, or a
    cache holding the same scene on neighbouring cells' grids, must not count twice in the median.
    """
    dates = sorted({a.when for a in acquisitions})
    stack = np.full((len(dates), len(bands), grid.height, grid.width), np.nan, dtype=np.float32)
    for acq in acquisitions:
        layer = stack[dates.index(acq.when)]
        refl = read_reflectance(acq, grid, bands)
        fill = np.isfinite(refl).all(axis=0) & ~np.isfinite(layer).all(axis=0)
        layer[:, fill] = refl[:, fill]
    refl = nan_median(stack)
    seen = np.isfinite(stack).all(axis=1)
    seen_dates = [d for d, s in zip(dates, seen, strict=True) if s.any()]  # only dates that saw it
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
        dn, invalid = read_digital_numbers(src, acq, grid, bands)
    refl = (dn.astype(np.float32) + acq.offset) / acq.scale
    refl[:, invalid] = np.nan
    return refl


def read_digital_numbers(src: rasterio.DatasetReader, acq: ImageFile, grid: ReadGrid, bands: tuple[str, ...]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The file's values on the grid in its own dtype, and where they are no ground (no data, not
    finite, or hidden by SCL): `local.read_reflectance` before scale and offset."""
    nodata = src.nodata if src.nodata is not None else 0
    try:
        dn = _read_on_grid(src, [acq.band_index[b] for b in bands], grid, nodata, Resampling.bilinear)
        invalid = (dn == nodata).any(axis=0)
        if dn.dtype.kind == "f":
            invalid |= ~np.isfinite(dn).all(axis=0)
        if SCL_BAND in acq.band_index:
            scl = _read_on_grid(src, [acq.band_index[SCL_BAND]], grid, 0, Resampling.nearest)[0]
            invalid |= np.isin(scl, SCL_INVALID)
    except rasterio.errors.RasterioIOError as exc:
        detail = exc.__cause__ or exc
        raise DamagedFileError(acq.path, None, f"the file opens but its data cannot be read ({detail})",
                               "the file is damaged or incomplete (a download cut short?): fetch or export "
                               "it again") from None
    return dn, invalid
