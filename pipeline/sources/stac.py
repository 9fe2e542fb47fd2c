"""Sentinel-2 L2A from a STAC API or a static STAC catalog, read cell by cell through the imagery cache.

The catalog is searched once per window over the AOI. For each cell, only the cell's window of each
band asset (one COG per band, as Earth Search serves them) is read, onto the cell's grid, into one
cached GeoTIFF per acquisition; from there the local source's code masks clouds with SCL, applies the
radiometry and composites, so a STAC run and a local run on the same imagery give the same leads.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import pystac
import rasterio
import requests
from pystac_client import Client
from pystac_client.exceptions import APIError
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from shapely import STRtree
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from detectors.bands import L2A_QUANTIFICATION, REFLECTANCE_BANDS, SCL_BAND
from pipeline.errors import InputError
from pipeline.plan import SourcePlan, cell_bytes, coverage
from pipeline.sources.cache import CacheKey, ImageryCache
from pipeline.sources.local import ImageFile, _read_on_grid, composite_of, inspect_file, separate_reads
from pipeline.sources.scene import Composite, ReadGrid

if TYPE_CHECKING:
    from pipeline.config import DateRange, StacSource, Windows
    from pipeline.inputs.grid import Cell

#: Earth Search's asset key of each band the detectors read (Planetary Computer uses the band names).
EARTH_SEARCH_ASSETS: dict[str, str] = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir",
                                       "B11": "swir16", "B12": "swir22", "SCL": "scl"}
#: The bands of a cached acquisition, in file order.
BANDS: tuple[str, ...] = (*REFLECTANCE_BANDS, SCL_BAND)
#: What the cached pixels are: the assets' digital numbers, bilinear onto the grid (SCL nearest).
PROCESSING = "stac-dn-on-grid-v1"
#: GDAL settings for reading assets over HTTP: no directory listings, a few retries of transient errors.
GDAL_HTTP = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "1",
             "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF"}
OFFLINE_FIX = ("check the URL and the network connection; on a network without internet access, read imagery "
               "carried in with `source: {type: local}`, or carry an imagery cache filled online "
               "(docs/sources/cache.md)")


@dataclass(frozen=True)
class StacScene:
    """One item of the catalog: when, how cloudy, where, its band assets and their radiometry."""

    id: str
    when: date
    cloud_cover: float | None
    footprint: tuple[float, float, float, float]  # WGS84 bounds
    hrefs: dict[str, str]  # band -> asset href
    offset: float  # added to the digital numbers before dividing by `scale`
    scale: float

    def usable(self, max_cloud_cover: float | None) -> bool:
        """Whether the item is worth reading: not wholly cloudy, and within the configured cloud cover."""
        if self.cloud_cover is None:
            return True
        return self.cloud_cover < 100 and (max_cloud_cover is None or self.cloud_cover <= max_cloud_cover)


def _radiometry(item: pystac.Item, asset: pystac.Asset) -> tuple[float, float]:
    """(offset, scale) of the digital numbers: the asset's raster:bands, else the processing baseline."""
    raster = (asset.extra_fields.get("raster:bands") or [{}])[0]
    if "scale" in raster:
        scale = float(raster["scale"])
        return round(float(raster.get("offset", 0.0)) / scale, 6), round(1.0 / scale, 6)
    baseline = item.properties.get("s2:processing_baseline")
    if baseline is not None:
        return (-1000.0 if str(baseline) >= "04.00" else 0.0), L2A_QUANTIFICATION
    return np.nan, L2A_QUANTIFICATION  # unknown: the local source's date rule decides


def _scene(item: pystac.Item, asset_bands: dict[str, str], url: str) -> StacScene:
    hrefs = {}
    for band in BANDS:
        key = asset_bands[band]
        asset = item.assets.get(key) or item.assets.get(band)
        if asset is None:
            raise InputError(url, "source.asset_bands", f"item {item.id} has no asset {key!r} for band {band} "
                             f"(its assets: {', '.join(sorted(item.assets))})",
                             f"map the band to one of those: source.asset_bands: {{{band}: <asset key>}}")
        hrefs[band] = asset.get_absolute_href() or asset.href
    when = _date(item)
    offset, scale = _radiometry(item, item.assets.get(asset_bands[REFLECTANCE_BANDS[0]])
                                or item.assets[REFLECTANCE_BANDS[0]])
    cloud = item.properties.get("eo:cloud_cover")
    return StacScene(item.id, when, None if cloud is None else float(cloud), _bounds(item), hrefs, offset, scale)


def _date(item: pystac.Item) -> date:
    """The acquisition date (items of a composite product give a range instead: its start)."""
    return (item.datetime or item.common_metadata.start_datetime).date()


def _bounds(item: pystac.Item) -> tuple[float, float, float, float]:
    """The item's WGS84 bounds: its bbox, else those of its geometry."""
    return tuple(item.bbox) if item.bbox else shape(item.geometry).bounds


class StacCatalog:
    """The configured catalog: an API searched with pystac-client, or a static catalog walked with pystac."""

    def __init__(self, config: StacSource) -> None:
        self.config = config
        self.url = config.url
        self.asset_bands = {**EARTH_SEARCH_ASSETS, **config.asset_bands}
        self._sign = _signer(config.sign)
        self.static = "://" not in self.url or self.url.lower().endswith(".json")
        if self.static and "://" not in self.url and not Path(self.url).is_file():
            raise InputError(self.url, "source.url", "no such file", "give the path of the static catalog's "
                             "catalog.json (relative paths start at the configuration's folder), or a STAC API URL")
        try:
            self._root = self._open()
        except (requests.RequestException, urllib.error.URLError, OSError, APIError) as exc:
            raise _network_error(self.url, "cannot reach the STAC catalog", exc) from None

    def _open(self) -> pystac.Collection | Client:
        """The collection of a static catalog, or the API client once it has the collection."""
        c = self.config.collection
        if self.static:
            root = pystac.read_file(self.url)
            if isinstance(root, pystac.Collection) and root.id == c:
                return root
            child = root.get_child(c) if isinstance(root, pystac.Catalog) else None
            if child is None:
                known = [ch.id for ch in root.get_children()] if isinstance(root, pystac.Catalog) else []
                self._unknown_collection(known)
            return child
        client = Client.open(self.url, modifier=self._sign)
        if client.get_collection(c) is None:  # pystac-client answers a 404 with None
            self._unknown_collection([col.id for col in client.get_collections()])
        return client

    def _unknown_collection(self, known: list[str]) -> NoReturn:
        raise InputError(self.url, "source.collection",
                         f"the catalog has no collection {self.config.collection!r} "
                         f"(it has: {', '.join(sorted(known)) or 'none'})",
                         "set source.collection to one of those (Sentinel-2 L2A: sentinel-2-l2a on Earth Search "
                         "and Planetary Computer)")

    def search(self, bbox: tuple[float, float, float, float], window: DateRange) -> list[StacScene]:
        """Every item of the collection over `bbox` (WGS84) in the window, before any cloud filter."""
        try:
            items = self._items(bbox, window)
        except (requests.RequestException, urllib.error.URLError, OSError, APIError) as exc:
            raise _network_error(self.url, "the STAC search failed", exc) from None
        return [_scene(item, self.asset_bands, self.url) for item in items]

    def _items(self, bbox: tuple[float, float, float, float], window: DateRange) -> list[pystac.Item]:
        if not self.static:
            search = self._root.search(collections=[self.config.collection], bbox=bbox, limit=100,
                                       datetime=f"{window.start.isoformat()}/{window.end.isoformat()}")
            return list(search.items())
        area = box(*bbox)
        items = []
        for item in self._root.get_items(recursive=True):
            if window.start <= _date(item) <= window.end and box(*_bounds(item)).intersects(area):
                items.append(self._sign(item) if self._sign else item)
        return items


def _network_error(url: str, what: str, exc: Exception) -> InputError:
    """An unreachable catalog points offline users onwards; an API's own error says to retry."""
    status = getattr(exc, "status_code", None)
    if status is None:
        return InputError(url, "source.url", f"{what} ({exc})", OFFLINE_FIX)
    return InputError(url, "source.url", f"{what}: the STAC API answered HTTP {status} ({str(exc)[:200]})",
                      "try again later; if it persists, check source.url and source.collection")


def _signer(sign: str | None) -> Callable[[Any], Any] | None:
    """Planetary Computer's URL signing, from its own package."""
    if sign is None:
        return None
    try:
        import planetary_computer
    except ImportError:
        raise InputError(None, "source.sign", "signing with planetary_computer needs the planetary-computer package, "
                         "which is not installed", "pip install planetary-computer, or remove source.sign") from None
    return planetary_computer.sign_inplace


class StacImagerySource:
    """Composites of STAC items, each cell's window of each asset read once and kept in the imagery cache."""

    bands = REFLECTANCE_BANDS

    def __init__(self, config: StacSource, aoi_wgs84: BaseGeometry) -> None:
        self.config = config
        self.catalog = StacCatalog(config)
        self.cache = ImageryCache(config.cache or Path("imagery_cache"))
        self._cache_source = f"stac:{config.url}:{config.collection}"
        self._bbox = tuple(aoi_wgs84.bounds)
        self._windows: dict[tuple[date, date], tuple[list[StacScene], STRtree]] = {}

    def window_scenes(self, window: DateRange) -> tuple[list[StacScene], STRtree]:
        """The window's usable scenes over the AOI and their footprints, searched once per window."""
        k = (window.start, window.end)
        if k not in self._windows:
            scenes = usable_scenes(self.catalog, self._bbox, window, self.config.max_cloud_cover)
            self._windows[k] = (scenes, STRtree([box(*s.footprint) for s in scenes]))
        return self._windows[k]

    def _files(self, grid: ReadGrid, window: DateRange) -> list[ImageFile]:
        """The window's scenes that reach the grid, each read onto it once (through the cache)."""
        scenes, tree = self.window_scenes(window)
        grid_wgs84 = box(*transform_bounds(grid.crs, "EPSG:4326", *grid.bounds))
        chosen = [scenes[i] for i in sorted(tree.query(grid_wgs84, predicate="intersects"))]
        return [inspect_file(self._cached(s, grid)) for s in chosen]

    def composite(self, grid: ReadGrid, window: DateRange) -> Composite | None:
        files = self._files(grid, window)
        return composite_of(files, grid, self.bands) if files else None

    def acquisition_reads(self, grid: ReadGrid, window: DateRange) -> list[tuple[date, np.ndarray]]:
        """Each scene of the window on the grid, not composited, by date (for a lead's confidence)."""
        return separate_reads(self._files(grid, window), grid, self.bands)

    def _cached(self, scene: StacScene, grid: ReadGrid) -> Path:
        key = CacheKey(self._cache_source, scene.id, grid, BANDS, PROCESSING)
        return self.cache.get(key) or self.cache.put(key, lambda tmp: write_scene_on_grid(tmp, scene, grid))


def usable_scenes(catalog: StacCatalog, bbox: tuple[float, float, float, float], window: DateRange,
                  max_cloud_cover: float | None) -> list[StacScene]:
    """The window's scenes worth reading; an empty search or a wholly cloudy window is an error, not a blank."""
    found = catalog.search(bbox, window)
    span = f"between {window.start} and {window.end}"
    if not found:
        raise InputError(catalog.url, "windows", f"the search found no scene of collection "
                         f"{catalog.config.collection!r} over the AOI {span}",
                         "check the window's dates and the collection (Sentinel-2 L2A exists from 2017 on), "
                         "or widen the window")
    usable = [s for s in found if s.usable(max_cloud_cover)]
    if not usable:
        seen = ", ".join(f"{s.when} ({s.cloud_cover:.0f}% cloud)" for s in sorted(found, key=lambda s: s.when))
        limit = f"above max_cloud_cover {max_cloud_cover:g}%" if max_cloud_cover is not None else "wholly cloudy"
        raise InputError(catalog.url, "source.max_cloud_cover", f"every scene over the AOI {span} is {limit}: {seen}",
                         "widen the window to take in clearer dates, or raise source.max_cloud_cover "
                         "(per-pixel cloud masking keeps the clear parts of a cloudy scene)")
    return usable


def write_scene_on_grid(path: Path, scene: StacScene, grid: ReadGrid) -> None:
    """Read the grid's window of each band asset (warped where the asset's CRS differs) into one GeoTIFF."""
    out = np.zeros((len(BANDS), grid.height, grid.width), dtype=np.uint16)
    with rasterio.Env(**GDAL_HTTP):
        for k, band in enumerate(BANDS):
            href = scene.hrefs[band]
            try:
                with rasterio.open(href) as src:
                    if np.dtype(src.dtypes[0]).kind == "f":
                        raise InputError(href, None, "the asset holds floating-point values, not Sentinel-2 L2A "
                                         "digital numbers", "point source.collection at a Sentinel-2 L2A collection")
                    nodata = src.nodata if src.nodata is not None else 0
                    resampling = Resampling.nearest if band == SCL_BAND else Resampling.bilinear
                    dn = _read_on_grid(src, [1], grid, nodata, resampling)[0]
            except rasterio.errors.RasterioIOError as exc:
                raise InputError(href, None, f"cannot read the asset of band {band} of {scene.id} ({exc})",
                                 OFFLINE_FIX) from None
            out[k] = np.where(dn == nodata, 0, dn)  # 0 is the cached files' no-data
    tags = {"ACQUISITION_DATE": scene.when.isoformat(), "PROCESSING_LEVEL": "L2A",
            "QUANTIFICATION_VALUE": f"{scene.scale:g}"}
    if np.isfinite(scene.offset):
        tags["BOA_ADD_OFFSET"] = f"{scene.offset:g}"
    if scene.cloud_cover is not None:
        tags["CLOUD_COVER"] = f"{scene.cloud_cover:g}"
    with rasterio.open(path, "w", driver="GTiff", width=grid.width, height=grid.height, count=len(BANDS),
                       dtype="uint16", crs=grid.crs, transform=grid.transform, nodata=0) as dst:
        dst.write(out)
        dst.update_tags(**tags)


def plan_stac(config: StacSource, aoi_wgs84: BaseGeometry, cells: list[Cell], windows: Windows) -> SourcePlan:
    """Search both windows (nothing is downloaded) and count the asset reads a run needs."""
    catalog = StacCatalog(config)
    bbox = tuple(aoi_wgs84.bounds)
    scenes = [s for w in (windows.baseline, windows.monitoring)
              for s in usable_scenes(catalog, bbox, w, config.max_cloud_cover)]
    per_cell, notes = coverage(cells, [(s.when, s.footprint) for s in scenes], windows)
    reads = int(per_cell.sum())
    return SourcePlan(f"stac {config.url} {config.collection}", len(cells), len(scenes), reads * len(BANDS),
                      reads * cell_bytes(cells[0], len(BANDS)) if cells else 0, notes=[
                          f"requests: one ranged read per band asset ({len(BANDS)}) per scene per cell, before "
                          "GDAL merges or splits ranges; bytes: uncompressed, without the halo (COGs transfer less)",
                          f"already cached acquisitions are not fetched again (cache: {config.cache})",
                          *notes])
